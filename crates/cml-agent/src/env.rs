//! The environment an agent (and so every job step) is started with.

/// Variables that carry our credentials and must never reach the agent.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    "REPO_TOKEN",
    "repo_token",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "BITBUCKET_TOKEN",
    "CML_TOKEN",
    "CML_DRIVER_TOKEN",
    "CML_RUNNER_TOKEN",
    "CML_RUNNER_DRIVER_TOKEN",
    "CML_GITHUB_APP_ID",
    "CML_GITHUB_APP_PEM",
    "ACTIONS_RUNNER_INPUT_TOKEN",
    "ACTIONS_RUNNER_INPUT_JITCONFIG",
    "CML_GITHUB_JIT_CONFIG",
];

/// Our environment minus every credential: the variables named in [`CREDENTIAL_VARIABLES`],
/// and any other variable whose value contains one of `secrets` (a token copied into a
/// differently named variable is still a token).
pub fn agent_env(secrets: &[String]) -> Vec<(String, String)> {
    filter_env(std::env::vars_os(), secrets)
}

fn filter_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    secrets: &[String],
) -> Vec<(String, String)> {
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, v)| {
            !CREDENTIAL_VARIABLES.contains(&k.as_str())
                && !secrets
                    .iter()
                    .any(|s| s.len() >= 4 && v.contains(s.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_named_and_copied_credentials() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("REPO_TOKEN", "ghp_x"),
            ("CML_GITHUB_APP_PEM", "-----BEGIN"),
            ("MY_COPY", "prefix ghp_secret123 suffix"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let env = filter_env(vars.into_iter(), &["ghp_secret123".into()]);
        let keys: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["PATH", "HOME"]);
    }
}
