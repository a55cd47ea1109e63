//! The rules of a runner pool (`cml runner pool`): how many single-use runners it wants, and
//! what it does about the ones it has. Pure: the caller observes the forge and its runners,
//! passes the time in, and carries out the [`Plan`].
//!
//! Contract:
//! - **Desired** = jobs running on the pool's runners + queued jobs that fit its labels + the
//!   warm floor of the moment ([`Schedule`]), capped at `max`.
//! - **Up**: runners are launched only while the pool holds fewer than desired (booting, idle,
//!   busy and unknown runners all count), so a machine above desired can only be one whose
//!   demand went away while it booted; and never while launches are backing off after a
//!   replacement that failed too.
//! - **Down**: only idle runners above desired are removed, the newest first. A busy runner,
//!   or one whose state is unknown (the forge did not say), is never removed; a booting one
//!   neither (it may be about to take the job it was launched for).
//! - **Boot window**: a runner not online within the window is removed and replaced once; a
//!   replacement that fails the same way is removed and reported, and launches back off
//!   ([`BACKOFF_FIRST`], doubling to [`BACKOFF_MAX`]) until a runner comes online again.
//! - Every runner is single-use (one job, then its machine goes), so nothing carries state
//!   from one job to the next; a runner that has run its job is gone from the forge.

use std::time::{Duration, Instant};

/// The first pause in launches after a replacement failed to come online too.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(60);
/// The longest pause in launches.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What a failed pool rule reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("--min-idle-schedule {0:?} is not a schedule\nhint: write DAYS HH:MM-HH:MM=N windows separated by ';', e.g. \"Mon-Fri 08:00-19:00=4; Sat 10:00-14:00=1\" (UTC; days Mon..Sun, a range or a comma list)")]
    Schedule(String),
    #[error("--min-idle ({min}) is more than --max ({max})\nhint: the warm floor cannot exceed the pool's size")]
    FloorAboveMax { min: u32, max: u32 },
    #[error("--max must be at least 1")]
    ZeroMax,
}

/// Whether a job asking for `wanted` labels may run on a runner of `driver` carrying `labels`:
/// every label asked for is one of the runner's (case-insensitively), counting the labels each
/// forge gives self-hosted runners by itself (GitHub `self-hosted`, `linux`, `x64`; Bitbucket
/// `self.hosted`, `linux`). A GitLab job without tags takes no tagged runner of ours.
pub fn fits(driver: crate::Driver, wanted: &[String], labels: &crate::Labels) -> bool {
    let implicit: &[&str] = match driver {
        crate::Driver::Github => &["self-hosted", "linux", "x64"],
        crate::Driver::Bitbucket => &["self.hosted", "linux"],
        crate::Driver::Gitlab => &[],
    };
    if driver == crate::Driver::Gitlab && wanted.is_empty() {
        return false;
    }
    wanted.iter().all(|w| {
        implicit.iter().any(|i| i.eq_ignore_ascii_case(w))
            || labels.as_slice().iter().any(|l| l.eq_ignore_ascii_case(w))
    })
}

/// Days of the week, Monday first (bit 0), as a set.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One window of the warm floor's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// Bit `d` set for day `d` (0 = Monday).
    days: u8,
    /// Minutes after midnight, UTC; `end` > `start`, or the window crosses midnight.
    start: u16,
    end: u16,
    floor: u32,
}

/// The warm floor over the week: `--min-idle-schedule`, windows `DAYS HH:MM-HH:MM=N` separated
/// by `;` (UTC), and `--min-idle` outside them. Where windows overlap, the highest floor wins. A
/// window whose end is before its start crosses midnight (its days are the days it starts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    windows: Vec<Window>,
    default: u32,
}

impl Schedule {
    /// A constant floor.
    pub fn constant(floor: u32) -> Schedule {
        Schedule {
            windows: Vec::new(),
            default: floor,
        }
    }

    /// Parses `spec` (see the type); `default` is the floor outside its windows.
    pub fn parse(spec: &str, default: u32) -> Result<Schedule, PoolError> {
        let bad = || PoolError::Schedule(spec.to_string());
        let mut windows = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (when, floor) = part.rsplit_once('=').ok_or_else(bad)?;
            let floor: u32 = floor.trim().parse().map_err(|_| bad())?;
            let mut words = when.split_whitespace();
            let (days, hours) = match (words.next(), words.next(), words.next()) {
                (Some(d), Some(h), None) => (d, h),
                _ => return Err(bad()),
            };
            let days = parse_days(days).ok_or_else(bad)?;
            let (start, end) = hours.split_once('-').ok_or_else(bad)?;
            let (start, end) = (
                parse_time(start).ok_or_else(bad)?,
                parse_time(end).ok_or_else(bad)?,
            );
            if start == end {
                return Err(bad());
            }
            windows.push(Window {
                days,
                start,
                end,
                floor,
            });
        }
        if windows.is_empty() {
            return Err(bad());
        }
        Ok(Schedule { windows, default })
    }

    /// The floor at `unix_seconds` (UTC).
    pub fn floor_at(&self, unix_seconds: u64) -> u32 {
        let days = unix_seconds / 86_400;
        // 1970-01-01 was a Thursday (day 3, Monday being 0).
        let weekday = ((days + 3) % 7) as u8;
        let minute = ((unix_seconds % 86_400) / 60) as u16;
        let yesterday = (weekday + 6) % 7;
        self.windows
            .iter()
            .filter(|w| {
                if w.start < w.end {
                    w.days & (1 << weekday) != 0 && (w.start..w.end).contains(&minute)
                } else {
                    (w.days & (1 << weekday) != 0 && minute >= w.start)
                        || (w.days & (1 << yesterday) != 0 && minute < w.end)
                }
            })
            .map(|w| w.floor)
            .max()
            .unwrap_or(self.default)
    }

    /// The highest floor it ever asks for.
    pub fn peak(&self) -> u32 {
        self.windows
            .iter()
            .map(|w| w.floor)
            .max()
            .unwrap_or(0)
            .max(self.default)
    }
}

fn parse_days(s: &str) -> Option<u8> {
    let day = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d));
    let mut set = 0u8;
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    set |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => set |= 1 << day(item)?,
        }
    }
    Some(set)
}

fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) if s.len() == 5 => Some(h * 60 + m),
        _ => None,
    }
}

/// The pool's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub floor: Schedule,
    pub max: u32,
    /// How long a runner may take to come online.
    pub boot_window: Duration,
}

impl Bounds {
    /// Checks that the floor fits under `max`.
    pub fn new(floor: Schedule, max: u32, boot_window: Duration) -> Result<Bounds, PoolError> {
        if max == 0 {
            return Err(PoolError::ZeroMax);
        }
        if floor.peak() > max {
            return Err(PoolError::FloorAboveMax {
                min: floor.peak(),
                max,
            });
        }
        Ok(Bounds {
            floor,
            max,
            boot_window,
        })
    }
}

/// A runner of the pool, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub name: String,
    pub state: State,
    pub launched: Instant,
    /// It replaces a runner that did not come online in time.
    pub replacement: bool,
}

/// What is known of a pool runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Launched, not yet online in the forge.
    Booting,
    Idle,
    Busy,
    /// The forge did not say (an error, or the runner is offline after having been online).
    Unknown,
    /// Its launch failed before it came online (the launcher or runner exited with an error):
    /// treated as a runner past the boot window.
    Failed,
}

/// What the pool should do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub desired: u32,
    /// New runners to launch.
    pub launch: u32,
    /// Of those, how many replace a runner that did not come online.
    pub replacements: u32,
    /// Runners to remove: idle ones above desired, and booting ones past the boot window.
    pub remove: Vec<String>,
    /// Replacements that did not come online either: removed, and to be reported.
    pub failed: Vec<String>,
}

/// The pool's memory between rounds: the launch back-off.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    paused_until: Option<Instant>,
    backoff: Option<Duration>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Until when launches are paused, if they are.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// One round: `queued` jobs that fit the labels and are not yet taken, `runners` as
    /// observed, at `now` (and `unix_seconds` for the schedule).
    pub fn plan(
        &mut self,
        bounds: &Bounds,
        queued: u32,
        runners: &[Runner],
        now: Instant,
        unix_seconds: u64,
    ) -> Plan {
        let busy = runners.iter().filter(|r| r.state == State::Busy).count() as u32;
        let floor = bounds.floor.floor_at(unix_seconds);
        let desired = busy
            .saturating_add(queued)
            .saturating_add(floor)
            .min(bounds.max);
        let mut plan = Plan {
            desired,
            ..Plan::default()
        };
        if runners
            .iter()
            .any(|r| matches!(r.state, State::Idle | State::Busy))
        {
            // A runner came online: whatever made launches fail has passed.
            self.backoff = None;
            self.paused_until = None;
        }
        // Booting past the window: removed; replaced once.
        let mut replace = 0;
        for r in runners
            .iter()
            .filter(|r| matches!(r.state, State::Booting | State::Failed))
        {
            if r.state == State::Booting
                && now.saturating_duration_since(r.launched) < bounds.boot_window
            {
                continue;
            }
            plan.remove.push(r.name.clone());
            if r.replacement {
                plan.failed.push(r.name.clone());
            } else {
                replace += 1;
            }
        }
        if !plan.failed.is_empty() {
            let next = self
                .backoff
                .map_or(BACKOFF_FIRST, |b| b.saturating_mul(2))
                .min(BACKOFF_MAX);
            self.backoff = Some(next);
            self.paused_until = now.checked_add(next);
        }
        let kept = runners.len() as u32 - plan.remove.len() as u32;
        let paused = self.paused_until.is_some_and(|t| now < t);
        if kept < desired && !paused {
            plan.launch = desired - kept;
            plan.replacements = replace.min(plan.launch);
        }
        // Down: idle runners above desired, newest first.
        if kept > desired {
            let mut idle: Vec<&Runner> = runners
                .iter()
                .filter(|r| r.state == State::Idle && !plan.remove.contains(&r.name))
                .collect();
            idle.sort_by_key(|r| std::cmp::Reverse(r.launched));
            for r in idle.into_iter().take((kept - desired) as usize) {
                plan.remove.push(r.name.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30 was a Monday.
    const MONDAY_0000: u64 = 1_795_996_800;

    fn at(day: u64, h: u64, m: u64) -> u64 {
        MONDAY_0000 + day * 86_400 + h * 3600 + m * 60
    }

    #[test]
    fn jobs_fit_runners_carrying_every_label_they_ask_for() {
        use crate::{Driver, Labels};
        let l = Labels::parse("cml,gpu");
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(fits(Driver::Github, &v(&["self-hosted", "GPU"]), &l));
        assert!(!fits(Driver::Github, &v(&["self-hosted", "arm64"]), &l));
        assert!(fits(Driver::Bitbucket, &v(&["self.hosted", "cml"]), &l));
        assert!(fits(Driver::Gitlab, &v(&["cml"]), &l));
        assert!(!fits(Driver::Gitlab, &v(&[]), &l));
    }

    #[test]
    fn schedules_give_the_floor_of_the_moment() {
        let s = Schedule::parse("Mon-Fri 08:00-19:00=4; Sat 10:00-14:00=1", 0).unwrap();
        assert_eq!(s.floor_at(at(0, 8, 0)), 4);
        assert_eq!(s.floor_at(at(0, 7, 59)), 0);
        assert_eq!(s.floor_at(at(4, 18, 59)), 4);
        assert_eq!(s.floor_at(at(4, 19, 0)), 0);
        assert_eq!(s.floor_at(at(5, 11, 0)), 1);
        assert_eq!(s.floor_at(at(6, 11, 0)), 0);
        assert_eq!(s.peak(), 4);
        // Across midnight, and a list of days; the highest overlapping floor wins.
        let s = Schedule::parse("Fri,Sat 22:00-02:00=2; Sat 00:00-01:00=3", 1).unwrap();
        assert_eq!(s.floor_at(at(4, 23, 0)), 2);
        assert_eq!(s.floor_at(at(5, 1, 30)), 2);
        assert_eq!(s.floor_at(at(5, 0, 30)), 3);
        assert_eq!(
            s.floor_at(at(6, 1, 30)),
            2,
            "Saturday's window runs into Sunday"
        );
        assert_eq!(s.floor_at(at(0, 1, 30)), 1);
        // Sun-Mon wraps the week.
        let s = Schedule::parse("sun-mon 00:00-24:00=5", 0).unwrap();
        assert_eq!(s.floor_at(at(6, 12, 0)), 5);
        assert_eq!(s.floor_at(at(0, 12, 0)), 5);
        assert_eq!(s.floor_at(at(1, 12, 0)), 0);
        for bad in [
            "",
            "Mon 08:00-19:00",
            "Mon 8:00-19:00=1",
            "Moon 08:00-19:00=1",
            "Mon 08:00-08:00=1",
            "Mon 08:00-25:00=1",
            "Mon-Fri=4",
            "Mon 08:00-19:00=-1",
        ] {
            assert_eq!(
                Schedule::parse(bad, 0),
                Err(PoolError::Schedule(bad.into())),
                "{bad}"
            );
        }
    }

    fn bounds(floor: u32, max: u32) -> Bounds {
        Bounds::new(Schedule::constant(floor), max, Duration::from_secs(300)).unwrap()
    }

    fn runner(name: &str, state: State, launched: Instant) -> Runner {
        Runner {
            name: name.into(),
            state,
            launched,
            replacement: false,
        }
    }

    #[test]
    fn desired_is_busy_plus_queued_plus_floor_capped_at_max() {
        let now = Instant::now();
        let mut p = Pool::new();
        let plan = p.plan(&bounds(2, 10), 3, &[], now, 0);
        assert_eq!((plan.desired, plan.launch), (5, 5));
        let rs = vec![
            runner("a", State::Busy, now),
            runner("b", State::Booting, now),
        ];
        let plan = p.plan(&bounds(1, 3), 10, &rs, now, 0);
        assert_eq!((plan.desired, plan.launch), (3, 1));
        assert_eq!(
            Bounds::new(Schedule::constant(4), 3, Duration::ZERO),
            Err(PoolError::FloorAboveMax { min: 4, max: 3 })
        );
        assert_eq!(
            Bounds::new(Schedule::constant(0), 0, Duration::ZERO),
            Err(PoolError::ZeroMax)
        );
    }

    #[test]
    fn only_idle_runners_above_desired_are_removed_newest_first() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let t2 = t0 + Duration::from_secs(2);
        let rs = vec![
            runner("busy", State::Busy, t0),
            runner("unknown", State::Unknown, t0),
            runner("old-idle", State::Idle, t0),
            runner("new-idle", State::Idle, t2),
            runner("booting", State::Booting, t1),
        ];
        let plan = Pool::new().plan(&bounds(0, 10), 0, &rs, t2, 0);
        assert_eq!(plan.desired, 1);
        assert_eq!(plan.launch, 0);
        assert_eq!(plan.remove, vec!["new-idle", "old-idle"]);
    }

    #[test]
    fn a_runner_late_to_boot_is_replaced_once_then_reported_and_launches_back_off() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(301);
        let mut p = Pool::new();
        let plan = p.plan(
            &bounds(0, 5),
            1,
            &[runner("a", State::Booting, t0)],
            late,
            0,
        );
        assert_eq!(plan.remove, vec!["a"]);
        assert_eq!((plan.launch, plan.replacements), (1, 1));
        assert!(plan.failed.is_empty());
        let mut b = runner("b", State::Booting, late);
        b.replacement = true;
        let later = late + Duration::from_secs(301);
        let plan = p.plan(&bounds(0, 5), 1, &[b.clone()], later, 0);
        assert_eq!(plan.failed, vec!["b"]);
        assert_eq!(plan.launch, 0, "launches pause after a failed replacement");
        assert_eq!(p.paused_until(), Some(later + BACKOFF_FIRST));
        let plan = p.plan(&bounds(0, 5), 1, &[], later + BACKOFF_FIRST, 0);
        assert_eq!(plan.launch, 1, "and resume after the pause");
        // A second failure doubles the pause; a runner online resets it.
        let at = later + BACKOFF_FIRST + Duration::from_secs(400);
        let mut c = runner("c", State::Booting, later + BACKOFF_FIRST);
        c.replacement = true;
        p.plan(&bounds(0, 5), 1, &[c], at, 0);
        assert_eq!(p.paused_until(), Some(at + 2 * BACKOFF_FIRST));
        let plan = p.plan(&bounds(0, 5), 1, &[runner("d", State::Idle, at)], at, 0);
        assert_eq!(p.paused_until(), None);
        assert_eq!(plan.launch, 0, "the idle runner takes the queued job");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn state() -> impl Strategy<Value = State> {
            prop_oneof![
                Just(State::Booting),
                Just(State::Idle),
                Just(State::Busy),
                Just(State::Unknown),
                Just(State::Failed)
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn busy_and_unknown_runners_are_never_removed_and_max_is_never_exceeded(
                states in proptest::collection::vec((state(), 0u64..900, any::<bool>()), 0..12),
                queued in 0u32..50,
                floor in 0u32..5,
                extra in 0u32..10,
                at in 0u64..2_000,
            ) {
                let t0 = Instant::now();
                let now = t0 + Duration::from_secs(at);
                let max = floor + extra + 1;
                let b = bounds(floor, max);
                let rs: Vec<Runner> = states
                    .iter()
                    .enumerate()
                    .map(|(i, (s, age, rep))| Runner {
                        name: format!("r{i}"),
                        state: *s,
                        launched: now.checked_sub(Duration::from_secs(*age)).unwrap_or(t0),
                        replacement: *rep,
                    })
                    .collect();
                let plan = Pool::new().plan(&b, queued, &rs, now, 0);
                for name in &plan.remove {
                    let r = rs.iter().find(|r| &r.name == name).unwrap();
                    prop_assert!(
                        matches!(r.state, State::Idle | State::Booting | State::Failed),
                        "{r:?}"
                    );
                }
                let kept = rs.len() as u32 - plan.remove.len() as u32;
                prop_assert!(plan.desired <= max);
                if plan.launch > 0 {
                    prop_assert_eq!(kept + plan.launch, plan.desired);
                }
                prop_assert!(plan.replacements <= plan.launch);
            }
        }
    }
}
