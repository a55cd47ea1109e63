//! CML's command-line conventions, applied to the arguments declared in [`crate::cli`]: the
//! forms its parser (yargs) accepts, and the environment variables every option is read from.
//!
//! Forms, for every command:
//! - a boolean takes `--x`, `--x=true`, `--x=false`, `--x true`, `--x false` and `--no-x`
//!   (unless `no-x` is an option itself, as `--no-retry` is); `--no-x=false` is `--x`;
//! - camelCase spellings are the kebab-case option: `--idleTimeout` = `--idle-timeout`;
//! - array options take several values after one flag and repeated flags.
//!
//! Variables: [`variables`] lists, for each option of each command, the variables it is read
//! from, first one winning; the help's `[env: ...]` is generated from the same list, and the
//! values found become the options' values when the command line does not give them, so the
//! settings read no option variable themselves. An empty variable counts as unset. A boolean
//! variable is true only when it is the string `true` (CML's rule); any other value is false,
//! with a warning unless it is `false`.

use crate::cli::Cli;
use crate::settings::Env;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Options whose `CML_<NAME>` variable applies to every command: CML copies it onto
/// `CML_<COMMAND>_<NAME>`, overwriting.
const GLOBAL_NAMES: &[&str] = &["driver", "driver-token", "log", "repo", "token"];

/// Options of `cml runner` also read from CML's legacy `RUNNER_<NAME>` variables, which CML
/// copies onto `CML_RUNNER_<NAME>` when non-empty, overwriting.
const LEGACY_RUNNER_NAMES: &[&str] = &[
    "idle-timeout",
    "labels",
    "single",
    "reuse",
    "no-retry",
    "driver",
    "repo",
    "path",
];

/// Variables of ours, read after CML's: (top-level command, option, variable).
const EXTRA: &[(&str, &str, &str)] = &[
    // The asset server of `cml asset publish --url`, also used for a comment's files.
    ("comment", "publish-url", "CML_PUBLISH_URL"),
    ("send-comment", "publish-url", "CML_PUBLISH_URL"),
];

/// Options whose values are credentials: never printed (shown as `***`).
pub const SECRET_OPTIONS: &[&str] = &[
    "driver-token",
    "cloud-ssh-private",
    "gcp-access-token",
    "tf-resource",
];

/// The variable prefix of a top-level command, and the older prefixes CML copies onto it
/// (overwriting, so they win).
fn prefixes(top: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match top {
        "runner" => ("CML_RUNNER", &[]),
        "comment" | "send-comment" => ("CML_COMMENT", &["CML_SEND_COMMENT"]),
        "check" | "send-github-check" => ("CML_CHECK", &["CML_SEND_GITHUB_CHECK"]),
        "asset" | "publish" => ("CML_ASSET", &["CML_PUBLISH"]),
        "pr" => ("CML_PR", &[]),
        "ci" | "repo" => ("CML_REPO", &["CML_CI"]),
        "workflow" | "rerun-workflow" => ("CML_WORKFLOW", &["CML_RERUN_WORKFLOW"]),
        "tensorboard" | "tensorboard-dev" => ("CML_TENSORBOARD", &["CML_TENSORBOARD_DEV"]),
        _ => return None,
    })
}

/// The variables option `arg` of the command at `path` (`["comment", "create"]`) is read
/// from, in precedence order (the first set one wins), as CML 0.20.6 resolves them:
/// 1. `cml runner` only: the legacy `RUNNER_<NAME>` (see [`LEGACY_RUNNER_NAMES`]);
/// 2. `--driver`, `--driver-token`/`--token`, `--log`, `--repo`: `CML_<NAME>`;
/// 3. the command's old prefix: `CML_SEND_COMMENT_<NAME>`, `CML_SEND_GITHUB_CHECK_<NAME>`,
///    `CML_PUBLISH_<NAME>`, `CML_CI_<NAME>`, `CML_RERUN_WORKFLOW_<NAME>`;
/// 4. `CML_<COMMAND>_<NAME>`: `CML_RUNNER_`, `CML_COMMENT_`, `CML_CHECK_`, `CML_ASSET_`,
///    `CML_PR_`, `CML_REPO_` (`ci`, `repo prepare`), `CML_WORKFLOW_`;
/// 5. a few of ours (see [`EXTRA`]).
///
/// `<NAME>` is the option's name, then each of its aliases (within a step), upper case with
/// `-` as `_`. Positional arguments have none.
pub fn variables(path: &[&str], arg: &Arg) -> Vec<String> {
    let Some(long) = arg.get_long() else {
        return Vec::new();
    };
    if is_builtin(arg) {
        return Vec::new();
    }
    let Some(top) = path.first() else {
        return Vec::new();
    };
    let Some((prefix, old)) = prefixes(top) else {
        return Vec::new();
    };
    let mut names = vec![long];
    names.extend(arg.get_all_aliases().unwrap_or_default());
    let upper = |n: &str| n.to_ascii_uppercase().replace('-', "_");
    let mut out: Vec<String> = Vec::new();
    if *top == "runner" {
        for n in names.iter().filter(|n| LEGACY_RUNNER_NAMES.contains(n)) {
            out.push(format!("RUNNER_{}", upper(n)));
        }
    }
    for n in names.iter().filter(|n| GLOBAL_NAMES.contains(n)) {
        out.push(format!("CML_{}", upper(n)));
    }
    for o in old {
        for n in &names {
            out.push(format!("{o}_{}", upper(n)));
        }
    }
    for n in &names {
        out.push(format!("{prefix}_{}", upper(n)));
    }
    for (t, o, var) in EXTRA {
        if t == top && *o == long {
            out.push(var.to_string());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|v| seen.insert(v.clone()));
    out
}

/// `--help` and `--version`, which no variable sets.
fn is_builtin(arg: &Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

/// A boolean option: an `Option<bool>` field, whose values are `true` and `false`.
fn is_boolean(arg: &Arg) -> bool {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    arg.get_long().is_some() && values == ["true", "false"]
}

/// An option taking one or more values of its own (not a boolean).
fn takes_values(arg: &Arg) -> bool {
    !is_boolean(arg)
        && arg
            .get_num_args()
            .is_some_and(|n| n.takes_values() && n.max_values() > 0)
}

/// An option taking several values after one flag (CML's array options).
fn is_array(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// The value a variable gave an option, and which variable.
#[derive(Debug, Clone)]
struct FromVariable {
    var: String,
    values: Vec<String>,
    /// Said once logging is set up, when this command runs.
    warning: Option<String>,
}

/// Which variable each option not given on the command line came from, by argument id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(BTreeMap<String, String>);

impl Sources {
    /// The variable argument `id` (a field name of [`crate::cli`]) came from, if it did.
    pub fn var(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }

    /// How to name option `id` (`--long`) in a message: its variable when it came from one.
    pub fn name(&self, id: &str, long: &'static str) -> String {
        match self.var(id) {
            Some(var) => var.to_string(),
            None => long.to_string(),
        }
    }
}

/// A parsed command line.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    /// The command run, as its names: `["comment", "create"]`.
    pub path: Vec<String>,
    /// To log once logging is set up.
    pub warnings: Vec<String>,
    /// Every option of the command run with its value (credentials as `***`), and where each
    /// came from: for `CML_PRINT_SETTINGS`.
    pub options: Value,
}

/// The command line with every option's variables (see [`variables`]) applied as the
/// option's value when it is not given, and its help naming them. Also returns, per command
/// path and argument id, what each variable gave.
fn command(env: &dyn Env) -> (Command, BTreeMap<(Vec<String>, String), FromVariable>) {
    let mut cmd = Cli::command();
    // Global options are copied into every command by the build; each command's copy then
    // gets that command's variables.
    cmd.build();
    let mut found = BTreeMap::new();
    let mut path = Vec::new();
    for sc in cmd.get_subcommands_mut() {
        apply_conventions(sc, &mut path, env, &mut found);
    }
    (cmd, found)
}

fn apply_conventions(
    cmd: &mut Command,
    path: &mut Vec<String>,
    env: &dyn Env,
    found: &mut BTreeMap<(Vec<String>, String), FromVariable>,
) {
    if cmd.get_name() == "help" {
        return;
    }
    path.push(cmd.get_name().to_string());
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    let owned = std::mem::take(cmd);
    *cmd = owned.mut_args(|mut arg| {
        if is_boolean(&arg) {
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true");
        }
        let vars = variables(&names, &arg);
        if vars.is_empty() {
            return arg;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        arg = arg.help(format!("{help} [env: {}]", vars.join(", ")));
        let Some(from) = read(&vars, &arg, env) else {
            return arg;
        };
        // clap keeps default values as `&'static str` (without its `string` feature): each
        // value found is leaked once, a few bytes per process.
        let values: Vec<&'static str> = from
            .values
            .iter()
            .map(|v| &*Box::leak(v.clone().into_boxed_str()))
            .collect();
        found.insert((path.clone(), arg.get_id().to_string()), from);
        // Never shown: a default from a variable may be a credential.
        arg.default_values(values).hide_default_value(true)
    });
    for sc in cmd.get_subcommands_mut() {
        apply_conventions(sc, path, env, found);
    }
    path.pop();
}

/// The first of `vars` that is set (non-empty), as the values of `arg`.
fn read(vars: &[String], arg: &Arg, env: &dyn Env) -> Option<FromVariable> {
    let (var, value) = vars
        .iter()
        .find_map(|v| env.get(v).filter(|x| !x.is_empty()).map(|x| (v.clone(), x)))?;
    let mut warning = None;
    let values = if is_boolean(arg) {
        if value != "true" && value != "false" {
            warning = Some(format!(
                "{var}={value:?} is not `true`, so it means false (as in CML); set it to true or false"
            ));
        }
        vec![(value == "true").to_string()]
    } else if is_array(arg) {
        // CML_RUNNER_DOCKER_VOLUMES=a:/a,b:/b
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    } else {
        vec![value]
    };
    if values.is_empty() {
        return None;
    }
    Some(FromVariable {
        var,
        values,
        warning,
    })
}

/// Parses the command line `argv` (program name first) with the variables of `env`.
pub fn parse(argv: Vec<OsString>, env: &dyn Env) -> Result<Parsed, clap::Error> {
    let (mut cmd, found) = command(env);
    let argv = normalize(argv, &cmd);
    let matches = cmd.try_get_matches_from_mut(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    // The command run and its matches.
    let mut path = Vec::new();
    let mut leaf_cmd = &cmd;
    let mut leaf = &matches;
    while let Some((name, sub)) = leaf.subcommand() {
        match leaf_cmd.find_subcommand(name) {
            Some(sc) => leaf_cmd = sc,
            None => break,
        }
        path.push(name.to_string());
        leaf = sub;
    }
    let mut sources = BTreeMap::new();
    let mut warnings = Vec::new();
    for arg in leaf_cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if leaf.value_source(id) != Some(clap::parser::ValueSource::DefaultValue) {
            continue;
        }
        if let Some(from) = found.get(&(path.clone(), id.to_string())) {
            sources.insert(id.to_string(), from.var.clone());
            warnings.extend(from.warning.clone());
        }
    }
    let options = options_json(leaf_cmd, leaf, &sources);
    cli.global.sources = Sources(sources);
    Ok(Parsed {
        cli,
        path,
        warnings,
        options,
    })
}

/// Every option of the command run: `{"options": {NAME: VALUE}, "sources": {NAME: VAR}}`.
fn options_json(cmd: &Command, m: &ArgMatches, sources: &BTreeMap<String, String>) -> Value {
    let mut options = Map::new();
    let mut from = Map::new();
    for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
        let id = arg.get_id().as_str();
        let Some(raw) = m.get_raw(id) else { continue };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let name = arg.get_long().unwrap_or(id).to_string();
        let secret = SECRET_OPTIONS.contains(&name.as_str());
        let value = if secret {
            Value::String("***".into())
        } else if is_boolean(arg) {
            Value::Bool(values.first().is_some_and(|v| v == "true"))
        } else if matches!(arg.get_action(), ArgAction::Append) || is_array(arg) {
            Value::Array(values.into_iter().map(Value::String).collect())
        } else {
            Value::String(values.join(" "))
        };
        options.insert(name.clone(), value);
        if let Some(var) = sources.get(id) {
            from.insert(name, Value::String(var.clone()));
        }
    }
    serde_json::json!({ "options": options, "sources": from })
}

/// Rewrites CML's forms into the ones the parser takes (see the module's documentation);
/// leaves everything else, and everything after `--` or inside a command that takes its
/// arguments verbatim, as it is.
fn normalize(argv: Vec<OsString>, root: &Command) -> Vec<OsString> {
    let mut args = argv.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let args: Vec<OsString> = args.collect();
    let mut cmd = root;
    // Whether an argument was seen since entering `cmd` (after one, a command whose
    // arguments conflict with its subcommands takes no subcommand).
    let mut seen_arg = false;
    let mut verbatim = false;
    let mut i = 0;
    while i < args.len() {
        let raw = &args[i];
        i += 1;
        let text = match raw.to_str() {
            Some(t) if !verbatim => t,
            _ => {
                out.push(raw.clone());
                continue;
            }
        };
        if text == "--" {
            verbatim = true;
            out.push(raw.clone());
            continue;
        }
        if let Some(body) = text.strip_prefix("--") {
            seen_arg = true;
            let (given, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let name = spelled(cmd, given);
            let with = |name: &str, value: Option<&str>| -> OsString {
                match value {
                    Some(v) => format!("--{name}={v}").into(),
                    None => format!("--{name}").into(),
                }
            };
            if let Some(arg) = find_long(cmd, &name) {
                if is_boolean(arg) {
                    let next = args.get(i).and_then(|a| a.to_str());
                    match (value, next) {
                        (None, Some(v @ ("true" | "false"))) => {
                            out.push(with(&name, Some(v)));
                            i += 1;
                        }
                        _ => out.push(with(&name, value)),
                    }
                } else {
                    out.push(with(&name, value));
                    // Its value is not an option, whatever it looks like.
                    if value.is_none() && takes_values(arg) && i < args.len() {
                        out.push(args[i].clone());
                        i += 1;
                    }
                }
                continue;
            }
            if let Some(base) = name.strip_prefix("no-") {
                if find_long(cmd, base).is_some_and(is_boolean) {
                    let negated = match value {
                        None | Some("true") => Some("false"),
                        Some("false") => Some("true"),
                        Some(_) => None,
                    };
                    if let Some(v) = negated {
                        out.push(with(base, Some(v)));
                        continue;
                    }
                }
            }
            out.push(raw.clone());
            continue;
        }
        if text.len() > 1 && text.starts_with('-') {
            seen_arg = true;
            out.push(raw.clone());
            // `-t TITLE`: its value is not an option.
            let mut chars = text.chars().skip(1);
            if let (Some(c), None) = (chars.next(), chars.next()) {
                if cmd
                    .get_arguments()
                    .find(|a| a.get_short() == Some(c))
                    .is_some_and(takes_values)
                    && i < args.len()
                {
                    out.push(args[i].clone());
                    i += 1;
                }
            }
            continue;
        }
        out.push(raw.clone());
        let descend = !(seen_arg && cmd.is_args_conflicts_with_subcommands_set());
        match cmd.find_subcommand(text).filter(|_| descend) {
            Some(sc) => {
                cmd = sc;
                seen_arg = false;
                // `tensorboard connect` takes CML's options as they are.
                if sc.get_arguments().any(|a| a.is_trailing_var_arg_set()) {
                    verbatim = true;
                }
            }
            None if std::ptr::eq(cmd, root) => verbatim = true, // a plugin's arguments
            None => seen_arg = true,
        }
    }
    out
}

/// The option `--given` names in `cmd`: itself, or the kebab-case option its camelCase
/// spelling stands for (`idleTimeout` → `idle-timeout`).
fn spelled(cmd: &Command, given: &str) -> String {
    if find_long(cmd, given).is_some() || !given.chars().any(|c| c.is_ascii_uppercase()) {
        return given.to_string();
    }
    let mut kebab = String::new();
    for c in given.chars() {
        if c.is_ascii_uppercase() {
            kebab.push('-');
            kebab.push(c.to_ascii_lowercase());
        } else {
            kebab.push(c);
        }
    }
    let base = kebab.strip_prefix("no-").unwrap_or(&kebab);
    if find_long(cmd, &kebab).is_some() || find_long(cmd, base).is_some() {
        kebab
    } else {
        given.to_string()
    }
}

/// The option of `cmd` named `name` or aliased so.
fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("cml")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect()
    }

    /// Every command that runs (no group), as its path, with its required positionals.
    fn commands() -> Vec<(Vec<String>, Vec<String>)> {
        fn walk(cmd: &Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Vec<String>)>) {
            for sc in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                path.push(sc.get_name().to_string());
                let required = sc
                    .get_positionals()
                    .filter(|a| a.is_required_set())
                    .map(|_| "positional".to_string())
                    .collect();
                if !sc.is_subcommand_required_set() {
                    out.push((path.clone(), required));
                }
                walk(sc, path, out);
                path.pop();
            }
        }
        let (cmd, _) = command(&env(&[]));
        let mut out = Vec::new();
        walk(&cmd, &mut Vec::new(), &mut out);
        out
    }

    fn find<'a>(root: &'a Command, path: &[String]) -> &'a Command {
        path.iter()
            .fold(root, |c, name| c.find_subcommand(name).expect("subcommand"))
    }

    /// The test value of a variable of `arg`, and the value the option then has.
    fn marker(arg: &Arg, var: &str) -> (String, Value) {
        if SECRET_OPTIONS.contains(&arg.get_long().unwrap_or_default()) {
            (format!("v-{var}"), Value::String("***".into()))
        } else if is_boolean(arg) {
            ("true".into(), Value::Bool(true))
        } else if is_array(arg) || matches!(arg.get_action(), ArgAction::Append) {
            (format!("v-{var}"), serde_json::json!([format!("v-{var}")]))
        } else {
            (format!("v-{var}"), Value::String(format!("v-{var}")))
        }
    }

    /// For every option of every command: its help names exactly the variables it is read
    /// from, each of them alone sets it (and is named as its source), and when all are set
    /// the first one wins.
    #[test]
    fn every_option_is_read_from_exactly_the_variables_its_help_names() {
        let (root, _) = command(&env(&[]));
        let mut checked = 0;
        for (path, positionals) in commands() {
            let cmd = find(&root, &path);
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.extend(positionals.iter().map(String::as_str));
            for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let vars = variables(&names, arg);
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let listed = help
                    .rsplit_once("[env: ")
                    .map(|(_, l)| l.trim_end_matches(']').to_string());
                let Some(long) = arg.get_long() else {
                    assert!(vars.is_empty() && listed.is_none(), "{path:?} {help}");
                    continue;
                };
                if path[0] == "tensorboard" || path[0] == "tensorboard-dev" {
                    continue;
                }
                assert_eq!(
                    listed.as_deref(),
                    Some(vars.join(", ").as_str()),
                    "{path:?} --{long}: {help}"
                );
                assert!(!vars.is_empty(), "{path:?} --{long} has no variable");
                for var in &vars {
                    let (value, expected) = marker(arg, var);
                    let parsed = parse(argv(&args), &env(&[(var.as_str(), value.as_str())]))
                        .unwrap_or_else(|e| panic!("{path:?} {var}: {e}"));
                    assert_eq!(
                        parsed.options["options"][long], expected,
                        "{path:?} --{long} from {var}: {}",
                        parsed.options
                    );
                    assert_eq!(
                        parsed.options["sources"][long],
                        Value::String(var.clone()),
                        "{path:?} --{long} from {var}"
                    );
                    checked += 1;
                }
                // All set: the first wins.
                let values: Vec<(String, String)> =
                    vars.iter().map(|v| (v.clone(), marker(arg, v).0)).collect();
                let pairs: Vec<(&str, &str)> = values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let parsed = parse(argv(&args), &env(&pairs)).unwrap();
                assert_eq!(
                    parsed.options["sources"][long],
                    Value::String(vars[0].clone()),
                    "{path:?} --{long}"
                );
            }
        }
        assert!(checked > 200, "only {checked} variables checked");
    }

    /// Parsing reads no variable but the options' own.
    #[test]
    fn parsing_reads_only_the_options_variables() {
        let (root, _) = command(&env(&[]));
        let mut all = BTreeSet::new();
        for (path, _) in commands() {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            for arg in find(&root, &path).get_arguments() {
                all.extend(variables(&names, arg));
            }
        }
        let asked = RefCell::new(BTreeSet::new());
        let recording = |k: &str| {
            asked.borrow_mut().insert(k.to_string());
            None
        };
        parse(argv(&["runner", "--single"]), &recording).unwrap();
        let asked = asked.into_inner();
        assert!(asked.is_subset(&all), "{:?}", asked.difference(&all));
        assert!(asked.contains("RUNNER_LABELS") && asked.contains("CML_COMMENT_TARGET"));
    }

    /// The settings read no option's variable themselves: they come through [`parse`] only
    /// (so the help cannot name variables the settings do not read, or the other way round).
    #[test]
    fn settings_read_no_option_variable() {
        let (root, _) = command(&env(&[]));
        let mut all = BTreeSet::new();
        for (path, _) in commands() {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            for arg in find(&root, &path).get_arguments() {
                all.extend(variables(&names, arg));
            }
        }
        let asked = RefCell::new(BTreeSet::new());
        let recording = |k: &str| {
            asked.borrow_mut().insert(k.to_string());
            match k {
                "HOME" => Some("/h".to_string()),
                "REPO_TOKEN" => Some("t".to_string()),
                _ => None,
            }
        };
        let cli = parse(
            argv(&["runner", "--repo=https://github.com/o/r", "--cloud=aws"]),
            &env(&[]),
        )
        .unwrap()
        .cli;
        let crate::cli::Command::Runner { args, .. } = &cli.command else {
            panic!()
        };
        crate::settings::resolve_runner(&cli.global, args, &recording, || None).unwrap();
        crate::settings::resolve_report(&cli.global, &recording, || None, None).unwrap();
        let cleanup = crate::cli::CleanupArgs {
            cloud: Some("aws".into()),
            ..Default::default()
        };
        crate::settings::resolve_cleanup(&cli.global, &cleanup, &recording, || None).unwrap();
        let asked = asked.into_inner();
        let both: Vec<_> = asked.intersection(&all).collect();
        assert!(both.is_empty(), "settings read option variables: {both:?}");
        assert!(asked.contains("REPO_TOKEN"), "{asked:?}");
    }

    #[test]
    fn variables_follow_cml_s_order() {
        let (root, _) = command(&env(&[]));
        let vars = |path: &[&str], long: &str| {
            let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            let arg = find_long(find(&root, &owned), long).expect(long);
            variables(path, arg)
        };
        assert_eq!(
            vars(&["runner"], "labels"),
            ["RUNNER_LABELS", "CML_RUNNER_LABELS"]
        );
        assert_eq!(
            vars(&["runner", "launch"], "repo"),
            ["RUNNER_REPO", "CML_REPO", "CML_RUNNER_REPO"]
        );
        assert_eq!(
            vars(&["runner"], "workdir"),
            ["RUNNER_PATH", "CML_RUNNER_WORKDIR", "CML_RUNNER_PATH"]
        );
        assert_eq!(
            vars(&["runner"], "driver-token"),
            [
                "CML_DRIVER_TOKEN",
                "CML_TOKEN",
                "CML_RUNNER_DRIVER_TOKEN",
                "CML_RUNNER_TOKEN"
            ]
        );
        assert_eq!(
            vars(&["runner"], "cloud-aws-subnet"),
            [
                "CML_RUNNER_CLOUD_AWS_SUBNET",
                "CML_RUNNER_CLOUD_AWS_SUBNET_ID"
            ]
        );
        assert_eq!(
            vars(&["comment", "update"], "publish-native"),
            [
                "CML_SEND_COMMENT_PUBLISH_NATIVE",
                "CML_SEND_COMMENT_NATIVE",
                "CML_COMMENT_PUBLISH_NATIVE",
                "CML_COMMENT_NATIVE"
            ]
        );
        assert_eq!(
            vars(&["send-comment"], "publish-url"),
            [
                "CML_SEND_COMMENT_PUBLISH_URL",
                "CML_COMMENT_PUBLISH_URL",
                "CML_PUBLISH_URL"
            ]
        );
        assert_eq!(
            vars(&["ci"], "repo"),
            ["CML_REPO", "CML_CI_REPO", "CML_REPO_REPO"]
        );
        assert_eq!(
            vars(&["repo", "prepare"], "fetch-depth"),
            ["CML_CI_FETCH_DEPTH", "CML_REPO_FETCH_DEPTH"]
        );
        assert_eq!(
            vars(&["pr"], "merge"),
            ["CML_PR_MERGE", "CML_PR_AUTO_MERGE"]
        );
        assert_eq!(
            vars(&["publish"], "url"),
            ["CML_PUBLISH_URL", "CML_ASSET_URL"]
        );
        assert_eq!(
            vars(&["send-github-check"], "conclusion"),
            ["CML_SEND_GITHUB_CHECK_CONCLUSION", "CML_CHECK_CONCLUSION"]
        );
        assert_eq!(
            vars(&["workflow", "rerun"], "id"),
            ["CML_RERUN_WORKFLOW_ID", "CML_WORKFLOW_ID"]
        );
        assert_eq!(vars(&["runner"], "log"), ["CML_LOG", "CML_RUNNER_LOG"]);
    }

    #[test]
    fn cml_s_forms_are_rewritten_for_the_parser() {
        let (root, _) = command(&env(&[]));
        let cases: &[(&[&str], &[&str])] = &[
            (&["runner", "--single"], &["runner", "--single"]),
            (
                &["runner", "--single", "true", "--labels", "x"],
                &["runner", "--single=true", "--labels", "x"],
            ),
            (
                &["runner", "--single", "maybe"],
                &["runner", "--single", "maybe"],
            ),
            (&["runner", "--no-single"], &["runner", "--single=false"]),
            (
                &["runner", "--no-single=false"],
                &["runner", "--single=true"],
            ),
            (
                &["runner", "--no-cloud-spot"],
                &["runner", "--cloud-spot=false"],
            ),
            (&["runner", "--no-retry"], &["runner", "--no-retry"]),
            (
                &["runner", "--no-retry", "false"],
                &["runner", "--no-retry=false"],
            ),
            (
                &["runner", "--idleTimeout", "5"],
                &["runner", "--idle-timeout", "5"],
            ),
            (&["runner", "--noRetry"], &["runner", "--no-retry"]),
            (
                &["runner", "--reuseIdle=true"],
                &["runner", "--reuse-idle=true"],
            ),
            (&["runner", "--noSingle"], &["runner", "--single=false"]),
            // A value is not an option, whatever it looks like.
            (
                &["runner", "--name", "--no-single"],
                &["runner", "--name", "--no-single"],
            ),
            (
                &["runner", "launch", "--no-reuse"],
                &["runner", "launch", "--reuse=false"],
            ),
            (
                &["--log", "debug", "runner", "--no-reuse"],
                &["--log", "debug", "runner", "--reuse=false"],
            ),
            (
                &["comment", "create", "--no-publish", "r.md"],
                &["comment", "create", "--publish=false", "r.md"],
            ),
            (
                &["send-comment", "r.md", "--native", "false"],
                &["send-comment", "r.md", "--native=false"],
            ),
            (
                &["pr", "--auto-merge", "true"],
                &["pr", "--auto-merge=true"],
            ),
            (
                &["asset", "publish", "-t", "--md", "f"],
                &["asset", "publish", "-t", "--md", "f"],
            ),
            // Not ours to rewrite: unknown options, after `--`, plugins, tensorboard.
            (&["runner", "--no-such"], &["runner", "--no-such"]),
            (&["runner", "--no-labels"], &["runner", "--no-labels"]),
            (&["pr", "--", "--no-md"], &["pr", "--", "--no-md"]),
            (
                &["hello", "--no-single", "true"],
                &["hello", "--no-single", "true"],
            ),
            (
                &["tensorboard-dev", "--no-md", "--md", "true"],
                &["tensorboard-dev", "--no-md", "--md", "true"],
            ),
        ];
        for (given, expected) in cases {
            let out = normalize(argv(given), &root);
            let out: Vec<String> = out[1..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(out, *expected, "{given:?}");
        }
    }

    #[test]
    fn boolean_variables_are_true_only_when_true() {
        for (value, single, warned) in [
            ("true", true, false),
            ("false", false, false),
            ("1", false, true),
            ("yes", false, true),
            ("TRUE", false, true),
        ] {
            let p = parse(argv(&["runner"]), &env(&[("CML_RUNNER_SINGLE", value)])).unwrap();
            let crate::cli::Command::Runner { args, .. } = &p.cli.command else {
                panic!()
            };
            assert_eq!(args.single, Some(single), "{value}");
            assert_eq!(
                p.warnings
                    .iter()
                    .any(|w| w.contains("CML_RUNNER_SINGLE") && w.contains("means false")),
                warned,
                "{value}: {:?}",
                p.warnings
            );
        }
        // Empty: unset, so the next variable counts.
        let p = parse(
            argv(&["runner"]),
            &env(&[("RUNNER_SINGLE", ""), ("CML_RUNNER_SINGLE", "true")]),
        )
        .unwrap();
        assert_eq!(p.options["sources"]["single"], "CML_RUNNER_SINGLE");
        // The command line wins, even its false.
        let p = parse(
            argv(&["runner", "--single=false"]),
            &env(&[("RUNNER_SINGLE", "true")]),
        )
        .unwrap();
        assert_eq!(p.options["options"]["single"], false);
        assert_eq!(p.options["sources"].get("single"), None);
    }

    #[test]
    fn a_bad_boolean_value_is_refused_with_the_option_named() {
        let e = parse(argv(&["runner", "--single=yes"]), &env(&[])).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("invalid value 'yes'") && text.contains("--single"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn help_shows_no_value_from_a_variable() {
        let (mut cmd, _) = command(&env(&[
            ("CML_TOKEN", "ghp_secret_help_token"),
            ("CML_RUNNER_CLOUD_SSH_PRIVATE", "-----BEGIN KEY-----"),
        ]));
        let runner = cmd.find_subcommand_mut("runner").unwrap();
        let help = runner.render_long_help().to_string();
        assert!(help.contains("[env: CML_DRIVER_TOKEN, CML_TOKEN"), "{help}");
        assert!(!help.contains("ghp_secret_help_token"), "{help}");
        assert!(!help.contains("BEGIN KEY"), "{help}");
    }
}
