//! The limits in the benchmarks: `--limits on|off|compare` for `ingest`
//! and `views`. `on` runs the services with their default limits (as they
//! ship), `off` with every limit that costs per request or per dispatch
//! turned off by its flag (the dispatch rates, the per-address connection
//! cap) and the connection cap raised out of reach. With `compare`, one
//! run measures both, back to back, alternating which goes first, and
//! prints the ratios on / off.

use super::auth::{AuthMode, Side};

/// Whether the services measured have their limits on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitsMode {
    /// The default limits, as the services ship.
    #[default]
    On,
    /// Every limit that costs per request or dispatch turned off.
    Off,
    /// Both, side by side in one run, with the ratio on / off.
    Compare,
}

/// The flags that turn a service's limits off.
pub const NO_LIMITS: [&str; 8] =
    ["--client-rate", "0", "--ip-rate", "0", "--max-connections-per-ip", "0", "--max-connections", "1000000"];

/// The sides to measure: those of `auth`, with limits on; then, with
/// `--limits off` or `compare`, the open services with limits off.
pub fn sides(auth: AuthMode, limits: LimitsMode) -> Vec<Side> {
    let mut sides: Vec<Side> = match limits {
        LimitsMode::Off => auth.sides().iter().copied().filter(|s| *s != Side::Open).collect(),
        LimitsMode::On | LimitsMode::Compare => auth.sides().to_vec(),
    };
    if limits == LimitsMode::Compare && !sides.contains(&Side::Open) {
        sides.insert(0, Side::Open);
    }
    if limits != LimitsMode::On {
        sides.push(Side::NoLimits);
    }
    sides
}

/// The extra flags a service of `side` is started with.
pub fn flags(side: Side) -> &'static [&'static str] {
    match side {
        Side::NoLimits => &NO_LIMITS,
        Side::Open | Side::Auth => &[],
    }
}

/// The comparisons to print: `(side measured, its reference, title)`.
pub fn comparisons(auth: AuthMode, limits: LimitsMode) -> Vec<(Side, Side, &'static str)> {
    let mut out = Vec::new();
    if auth == AuthMode::Compare {
        out.push((Side::Auth, Side::Open, "auth on / off"));
    }
    if limits == LimitsMode::Compare {
        out.push((Side::Open, Side::NoLimits, "default limits on / off"));
    }
    out
}

/// The median, smallest and largest of `ratios`, as `0.987x [0.95, 1.02]`.
pub fn summary(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    match (ratios.first(), ratios.get(ratios.len() / 2), ratios.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{mid:.3}x [{lo:.2}, {hi:.2}]"),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sides_of_each_mode() {
        assert_eq!(sides(AuthMode::Off, LimitsMode::On), [Side::Open]);
        assert_eq!(sides(AuthMode::Off, LimitsMode::Compare), [Side::Open, Side::NoLimits]);
        assert_eq!(sides(AuthMode::Off, LimitsMode::Off), [Side::NoLimits]);
        assert_eq!(sides(AuthMode::On, LimitsMode::Compare), [Side::Open, Side::Auth, Side::NoLimits]);
        assert_eq!(sides(AuthMode::Compare, LimitsMode::On), [Side::Open, Side::Auth]);
    }
}
