//! Routing rules: which upstream(s) a message goes to.
//!
//! # Configuration
//!
//! ```toml
//! [[routes]]
//! prefix = "4477"                       # destination prefix; "" is the default route
//! system_ids = ["acme"]                 # optional: only for these clients
//! source_prefixes = ["ACME", "4470"]    # optional: only for these source addresses
//! upstreams = [
//!   { name = "carrier-a", weight = 3 },
//!   { name = "carrier-b", weight = 1 },
//!   { name = "carrier-c", weight = 0 }, # backup only: never picked by weight, only by failover
//! ]
//! ```
//!
//! A leading `+` on a prefix or on a destination is ignored (`+4477…` and `4477…` are the same
//! number). Matching is on the exact characters otherwise (no case folding).
//!
//! # Which route matches
//!
//! Among the rules whose destination prefix is a prefix of the destination, whose `system_ids`
//! (if given) contain the client's system_id and one of whose `source_prefixes` (if given) is a
//! prefix of the source address, the most specific wins, compared in this order:
//!
//! 1. the longer destination prefix;
//! 2. a rule restricted by `system_ids` beats one that is not;
//! 3. a rule restricted by `source_prefixes` beats one that is not, and between two such rules
//!    the one whose matching source prefix is longer wins;
//! 4. the rule that comes first in the configuration.
//!
//! So a destination prefix is the main key, and at equal prefix length a client contract beats a
//! sender-based rule, which beats a general rule. Two rules with identical matchers (same prefix,
//! same set of system_ids, same set of source prefixes) are a configuration error.
//!
//! # Which upstreams, in which order
//!
//! The upstreams of a route are listed in failover order. [`Router::route`] returns the
//! candidates to try, in order: first the upstream picked by weight among the *available*
//! upstreams of weight > 0 (smooth weighted round robin, as in nginx: deterministic, and over any
//! run of `sum(weights)` picks from a fresh state each upstream is picked exactly `weight` times),
//! then every other available upstream of the route in list order. Unavailable upstreams (no
//! bound session) are left out and do not take part in the weighted pick, so their share goes to
//! the others while they are down.
//!
//! # Cost
//!
//! Rules are indexed by destination prefix in one hash map; a lookup probes only the prefix
//! lengths that occur in the configuration (longest first), so it costs at most one hash lookup
//! per distinct prefix length however many thousands of prefixes there are.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One `[[routes]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination address prefix; empty matches every destination.
    #[serde(default)]
    pub prefix: String,
    /// If given, the route applies only to messages from these clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_ids: Option<Vec<String>>,
    /// If given, the route applies only to messages whose source address starts with one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_prefixes: Option<Vec<String>>,
    /// Upstreams in failover order, each with its share of the weighted split.
    pub upstreams: Vec<UpstreamRef>,
}

/// An upstream named by a route, with its weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRef {
    /// The upstream's name in the `[[upstreams]]` configuration.
    pub name: String,
    /// Share of the weighted split; 0 makes it a failover-only backup.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A configuration error, naming the route by its index in `[[routes]]` (0-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("routes[{route}]: no upstreams")]
    NoUpstreams { route: usize },
    #[error("routes[{route}]: every upstream has weight 0")]
    AllWeightsZero { route: usize },
    #[error("routes[{route}]: upstream {name:?} listed twice")]
    DuplicateUpstream { route: usize, name: String },
    #[error("routes[{route}]: empty upstream name")]
    EmptyUpstreamName { route: usize },
    #[error("routes[{route}]: `system_ids` is empty (leave it out to match every client)")]
    EmptySystemIds { route: usize },
    #[error("routes[{route}]: `source_prefixes` is empty (leave it out to match every source)")]
    EmptySourcePrefixes { route: usize },
    #[error("routes[{route}]: same prefix, system_ids and source_prefixes as routes[{first}]")]
    DuplicateMatcher { route: usize, first: usize },
    #[error("routes[{route}]: unknown upstream {name:?}")]
    UnknownUpstream { route: usize, name: String },
}

/// The answer of [`Router::route`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteDecision<'r> {
    /// Upstreams to try, in order (never empty): the weighted pick, then failover.
    Candidates {
        /// Index of the matching route in the configuration.
        route: usize,
        upstreams: Vec<&'r str>,
    },
    /// No route matches: the message is rejected.
    NoRoute,
    /// A route matches but none of its upstreams is available: retry later.
    NoUpstreamAvailable { route: usize },
}

#[derive(Debug)]
struct Rule {
    index: usize,
    system_ids: Option<HashSet<Box<str>>>,
    source_prefixes: Option<Vec<Box<str>>>,
    upstreams: Vec<(Box<str>, u32)>,
    /// Smooth weighted round robin: the current weight of each upstream.
    current: Mutex<Vec<i64>>,
}

/// How specific a matching rule is; larger wins (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    client: bool,
    /// `None`: no source restriction; `Some(n)`: the matching source prefix has `n` bytes.
    source: Option<usize>,
}

impl Rule {
    fn matches(&self, system_id: &str, source: &str) -> Option<Specificity> {
        let client = match &self.system_ids {
            None => false,
            Some(ids) if ids.contains(system_id) => true,
            Some(_) => return None,
        };
        let source = match &self.source_prefixes {
            None => None,
            Some(prefixes) => {
                let longest = prefixes
                    .iter()
                    .filter(|p| source.starts_with(&***p))
                    .map(|p| p.len())
                    .max()?;
                Some(longest)
            }
        };
        Some(Specificity { client, source })
    }

    /// The weighted pick among available upstreams of weight > 0.
    fn pick(&self, available: &[bool]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, (_, weight)) in self.upstreams.iter().enumerate() {
            if *weight == 0 || !available[i] {
                continue;
            }
            let weight = i64::from(*weight);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

/// The compiled routing table. Cheap to share (`Arc<Router>`) between relay workers.
#[derive(Debug)]
pub struct Router {
    /// Destination prefix (without a leading `+`) -> rules with that prefix, in config order.
    by_prefix: HashMap<Box<str>, Vec<Rule>>,
    /// Distinct prefix lengths in bytes, longest first.
    lengths: Vec<usize>,
}

fn strip_plus(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

impl Router {
    /// Validates the routes and builds the lookup structures.
    pub fn new(routes: Vec<RouteConfig>) -> Result<Router, RouteError> {
        let mut by_prefix: HashMap<Box<str>, Vec<Rule>> = HashMap::new();
        type Matcher = (String, Option<BTreeSet<String>>, Option<BTreeSet<String>>);
        let mut seen: HashMap<Matcher, usize> = HashMap::new();
        for (index, route) in routes.into_iter().enumerate() {
            if route.upstreams.is_empty() {
                return Err(RouteError::NoUpstreams { route: index });
            }
            let mut names = HashSet::new();
            for upstream in &route.upstreams {
                if upstream.name.is_empty() {
                    return Err(RouteError::EmptyUpstreamName { route: index });
                }
                if !names.insert(upstream.name.as_str()) {
                    return Err(RouteError::DuplicateUpstream {
                        route: index,
                        name: upstream.name.clone(),
                    });
                }
            }
            if route.upstreams.iter().all(|u| u.weight == 0) {
                return Err(RouteError::AllWeightsZero { route: index });
            }
            if route.system_ids.as_ref().is_some_and(Vec::is_empty) {
                return Err(RouteError::EmptySystemIds { route: index });
            }
            if route.source_prefixes.as_ref().is_some_and(Vec::is_empty) {
                return Err(RouteError::EmptySourcePrefixes { route: index });
            }
            let prefix = strip_plus(&route.prefix).to_string();
            let matcher: Matcher = (
                prefix.clone(),
                route.system_ids.as_ref().map(|v| v.iter().cloned().collect()),
                route.source_prefixes.as_ref().map(|v| v.iter().cloned().collect()),
            );
            if let Some(&first) = seen.get(&matcher) {
                return Err(RouteError::DuplicateMatcher { route: index, first });
            }
            seen.insert(matcher, index);
            let rule = Rule {
                index,
                system_ids: route
                    .system_ids
                    .map(|v| v.into_iter().map(String::into_boxed_str).collect()),
                source_prefixes: route
                    .source_prefixes
                    .map(|v| v.into_iter().map(String::into_boxed_str).collect()),
                current: Mutex::new(vec![0; route.upstreams.len()]),
                upstreams: route
                    .upstreams
                    .into_iter()
                    .map(|u| (u.name.into_boxed_str(), u.weight))
                    .collect(),
            };
            by_prefix.entry(prefix.into_boxed_str()).or_default().push(rule);
        }
        let mut lengths: Vec<usize> = by_prefix
            .keys()
            .map(|k| k.len())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        lengths.reverse();
        Ok(Router { by_prefix, lengths })
    }

    /// Checks that every upstream a route names is known (e.g. defined in `[[upstreams]]`).
    pub fn check_upstreams(&self, known: impl Fn(&str) -> bool) -> Result<(), RouteError> {
        let mut unknown: Vec<(usize, &str)> = self
            .rules()
            .flat_map(|r| r.upstreams.iter().map(move |(n, _)| (r.index, &**n)))
            .filter(|(_, n)| !known(n))
            .collect();
        unknown.sort();
        match unknown.first() {
            Some(&(route, name)) => Err(RouteError::UnknownUpstream {
                route,
                name: name.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Every upstream name used by some route, sorted and deduplicated.
    pub fn upstream_names(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self
            .rules()
            .flat_map(|r| r.upstreams.iter().map(|(n, _)| &**n))
            .collect();
        set.into_iter().collect()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.rules().count()
    }

    /// `true` when there are no routes (every message gets [`RouteDecision::NoRoute`]).
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.by_prefix.values().flatten()
    }

    /// The most specific rule matching this message, if any.
    fn find(&self, system_id: &str, source: &str, dest: &str) -> Option<&Rule> {
        let dest = strip_plus(dest);
        for &len in &self.lengths {
            let Some(prefix) = dest.get(..len) else { continue };
            let Some(rules) = self.by_prefix.get(prefix) else {
                continue;
            };
            let mut best: Option<(Specificity, &Rule)> = None;
            // Rules are in config order, so a strict `>` keeps the first of equals.
            for rule in rules {
                if let Some(spec) = rule.matches(system_id, source) {
                    if best.is_none_or(|(b, _)| spec > b) {
                        best = Some((spec, rule));
                    }
                }
            }
            if let Some((_, rule)) = best {
                return Some(rule);
            }
        }
        None
    }

    /// Routes one message from client `system_id`, source address `source`, to `dest`.
    ///
    /// `is_available` says whether an upstream has a bound session now; it is called once per
    /// upstream of the matching route. Advances the route's weighted round robin.
    pub fn route(
        &self,
        system_id: &str,
        source: &str,
        dest: &str,
        is_available: impl Fn(&str) -> bool,
    ) -> RouteDecision<'_> {
        let Some(rule) = self.find(system_id, source, dest) else {
            return RouteDecision::NoRoute;
        };
        let available: Vec<bool> = rule.upstreams.iter().map(|(n, _)| is_available(n)).collect();
        if !available.iter().any(|a| *a) {
            return RouteDecision::NoUpstreamAvailable { route: rule.index };
        }
        let first = rule.pick(&available);
        let mut upstreams = Vec::with_capacity(rule.upstreams.len());
        if let Some(first) = first {
            upstreams.push(&*rule.upstreams[first].0);
        }
        for (i, (name, _)) in rule.upstreams.iter().enumerate() {
            if available[i] && Some(i) != first {
                upstreams.push(&**name);
            }
        }
        RouteDecision::Candidates {
            route: rule.index,
            upstreams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, weight: u32) -> UpstreamRef {
        UpstreamRef {
            name: name.to_string(),
            weight,
        }
    }

    fn rule(prefix: &str, upstreams: &[(&str, u32)]) -> RouteConfig {
        RouteConfig {
            prefix: prefix.to_string(),
            system_ids: None,
            source_prefixes: None,
            upstreams: upstreams.iter().map(|(n, w)| up(n, *w)).collect(),
        }
    }

    fn for_clients(mut r: RouteConfig, ids: &[&str]) -> RouteConfig {
        r.system_ids = Some(ids.iter().map(|s| s.to_string()).collect());
        r
    }

    fn for_sources(mut r: RouteConfig, prefixes: &[&str]) -> RouteConfig {
        r.source_prefixes = Some(prefixes.iter().map(|s| s.to_string()).collect());
        r
    }

    fn all(_: &str) -> bool {
        true
    }

    /// The route index chosen, all upstreams available.
    fn chosen(router: &Router, system_id: &str, source: &str, dest: &str) -> Option<usize> {
        match router.route(system_id, source, dest, all) {
            RouteDecision::Candidates { route, .. } => Some(route),
            RouteDecision::NoRoute => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn candidates<'r>(router: &'r Router, dest: &str, available: &[&str]) -> RouteDecision<'r> {
        router.route("c", "s", dest, |n| available.contains(&n))
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        routes: Vec<RouteConfig>,
    }

    #[test]
    fn parses_toml_with_defaults() {
        let w: Wrapper = toml::from_str(
            r#"
            [[routes]]
            prefix = "4477"
            system_ids = ["acme"]
            source_prefixes = ["ACME"]
            upstreams = [{ name = "a", weight = 3 }, { name = "b" }]

            [[routes]]
            upstreams = [{ name = "c" }]
            "#,
        )
        .unwrap();
        assert_eq!(w.routes[0].upstreams, vec![up("a", 3), up("b", 1)]);
        assert_eq!(w.routes[0].system_ids, Some(vec!["acme".to_string()]));
        assert_eq!(w.routes[1].prefix, "");
        assert_eq!(w.routes[1].system_ids, None);
        assert_eq!(Router::new(w.routes).unwrap().len(), 2);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<Wrapper>("[[routes]]\nprefx = \"44\"\nupstreams = [{ name = \"a\" }]\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("prefx"), "{err}");
        let err = toml::from_str::<Wrapper>("[[routes]]\nupstreams = [{ name = \"a\", wieght = 2 }]\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("wieght"), "{err}");
        assert!(
            toml::from_str::<Wrapper>("[[routes]]\nprefix = \"44\"\n").is_err(),
            "upstreams required"
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let router = Router::new(vec![
            rule("", &[("default", 1)]),
            rule("44", &[("uk", 1)]),
            rule("447", &[("uk-mobile", 1)]),
            rule("4477", &[("uk-77", 1)]),
            rule("1", &[("nanp", 1)]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "c", "s", "447712345678"), Some(3));
        assert_eq!(chosen(&router, "c", "s", "447812345678"), Some(2));
        assert_eq!(chosen(&router, "c", "s", "442012345678"), Some(1));
        assert_eq!(chosen(&router, "c", "s", "12125550100"), Some(4));
        assert_eq!(chosen(&router, "c", "s", "33612345678"), Some(0));
        assert_eq!(chosen(&router, "c", "s", "44"), Some(1), "the prefix itself matches");
        assert_eq!(chosen(&router, "c", "s", "4"), Some(0), "shorter than every prefix");
        assert_eq!(chosen(&router, "c", "s", ""), Some(0));
    }

    #[test]
    fn leading_plus_is_ignored() {
        let router = Router::new(vec![rule("+44", &[("uk", 1)]), rule("49", &[("de", 1)])]).unwrap();
        assert_eq!(chosen(&router, "c", "s", "447700900000"), Some(0));
        assert_eq!(chosen(&router, "c", "s", "+447700900000"), Some(0));
        assert_eq!(chosen(&router, "c", "s", "+4915112345"), Some(1));
        assert_eq!(chosen(&router, "c", "s", "+3361234"), None);
    }

    #[test]
    fn no_route() {
        let router = Router::new(vec![rule("44", &[("uk", 1)])]).unwrap();
        assert_eq!(router.route("c", "s", "33612345678", all), RouteDecision::NoRoute);
        let empty = Router::new(vec![]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.route("c", "s", "447700900000", all), RouteDecision::NoRoute);
    }

    #[test]
    fn system_id_rule_beats_general_rule_at_equal_prefix() {
        let router = Router::new(vec![
            rule("44", &[("general", 1)]),
            for_clients(rule("44", &[("acme-carrier", 1)]), &["acme", "globex"]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "acme", "s", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "globex", "s", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "initech", "s", "447700900000"), Some(0));
    }

    #[test]
    fn longer_general_prefix_beats_shorter_restricted_rule() {
        let router = Router::new(vec![
            for_clients(rule("44", &[("acme-carrier", 1)]), &["acme"]),
            for_sources(rule("4", &[("src", 1)]), &["ACME"]),
            rule("4477", &[("uk-77", 1)]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "acme", "ACME", "447700900000"), Some(2));
        assert_eq!(chosen(&router, "acme", "ACME", "447800900000"), Some(0));
        assert_eq!(chosen(&router, "other", "ACME", "447800900000"), Some(1));
    }

    #[test]
    fn restricted_rule_that_does_not_match_falls_back() {
        let router = Router::new(vec![
            rule("", &[("default", 1)]),
            for_clients(rule("4477", &[("acme-77", 1)]), &["acme"]),
            for_sources(rule("4478", &[("sender-78", 1)]), &["BANK"]),
        ])
        .unwrap();
        // Falls back to a shorter prefix when the restricted rule at the longer one does not apply.
        assert_eq!(chosen(&router, "other", "s", "447700900000"), Some(0));
        assert_eq!(chosen(&router, "acme", "s", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "x", "SHOP", "447800900000"), Some(0));
        assert_eq!(chosen(&router, "x", "BANKING", "447800900000"), Some(2));
        // Only restricted rules and none applies: no route.
        let router = Router::new(vec![for_clients(rule("44", &[("a", 1)]), &["acme"])]).unwrap();
        assert_eq!(chosen(&router, "other", "s", "447700900000"), None);
    }

    #[test]
    fn source_rule_beats_general_and_longer_source_prefix_wins() {
        let router = Router::new(vec![
            rule("44", &[("general", 1)]),
            for_sources(rule("44", &[("short-src", 1)]), &["44", "BANK"]),
            for_sources(rule("44", &[("long-src", 1)]), &["4470"]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "c", "447012345", "447700900000"), Some(2));
        assert_eq!(chosen(&router, "c", "447112345", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "c", "BANK", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "c", "bank", "447700900000"), Some(0), "case-sensitive");
        assert_eq!(chosen(&router, "c", "33612345", "447700900000"), Some(0));
    }

    #[test]
    fn client_restriction_beats_source_restriction_and_both_beat_either() {
        let router = Router::new(vec![
            for_sources(rule("44", &[("by-source", 1)]), &["4470"]),
            for_clients(rule("44", &[("by-client", 1)]), &["acme"]),
            for_sources(for_clients(rule("44", &[("by-both", 1)]), &["acme"]), &["BANK"]),
            rule("44", &[("general", 1)]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "acme", "447012345", "447700900000"), Some(1));
        assert_eq!(chosen(&router, "acme", "BANK", "447700900000"), Some(2));
        assert_eq!(chosen(&router, "other", "447012345", "447700900000"), Some(0));
        assert_eq!(chosen(&router, "other", "BANK", "447700900000"), Some(3));
    }

    #[test]
    fn equal_specificity_is_broken_by_config_order() {
        let router = Router::new(vec![
            for_clients(rule("44", &[("first", 1)]), &["acme"]),
            for_clients(rule("44", &[("second", 1)]), &["acme", "globex"]),
        ])
        .unwrap();
        assert_eq!(chosen(&router, "acme", "s", "447700900000"), Some(0));
        assert_eq!(chosen(&router, "globex", "s", "447700900000"), Some(1));
    }

    #[test]
    fn smooth_wrr_matches_nginx_sequence() {
        let router = Router::new(vec![rule("", &[("a", 5), ("b", 1), ("c", 1)])]).unwrap();
        let picks: Vec<&str> = (0..14)
            .map(|_| match router.route("c", "s", "1", all) {
                RouteDecision::Candidates { upstreams, .. } => upstreams[0],
                other => panic!("{other:?}"),
            })
            .collect();
        // nginx's documented sequence for weights 5,1,1, twice.
        assert_eq!(
            picks,
            ["a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"]
        );
    }

    #[test]
    fn weighted_split_is_exact_over_10000_picks() {
        let router = Router::new(vec![rule("", &[("a", 5), ("b", 3), ("c", 2), ("backup", 0)])]).unwrap();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for _ in 0..10_000 {
            match router.route("c", "s", "1", all) {
                RouteDecision::Candidates { upstreams, .. } => *counts.entry(upstreams[0]).or_default() += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counts.get("a"), Some(&5000));
        assert_eq!(counts.get("b"), Some(&3000));
        assert_eq!(counts.get("c"), Some(&2000));
        assert_eq!(counts.get("backup"), None, "weight 0 is never the weighted pick");
        // Exact on every window of sum(weights) picks too.
        let mut window: HashMap<&str, usize> = HashMap::new();
        for _ in 0..10 {
            if let RouteDecision::Candidates { upstreams, .. } = router.route("c", "s", "1", all) {
                *window.entry(upstreams[0]).or_default() += 1;
            }
        }
        assert_eq!((window["a"], window["b"], window["c"]), (5, 3, 2));
    }

    #[test]
    fn failover_order_follows_the_list_after_the_weighted_pick() {
        let router = Router::new(vec![rule("", &[("a", 1), ("b", 1), ("c", 0), ("d", 1)])]).unwrap();
        let expected = [["a", "b", "c", "d"], ["b", "a", "c", "d"], ["d", "a", "b", "c"]];
        for want in expected {
            assert_eq!(
                router.route("x", "y", "1", all),
                RouteDecision::Candidates {
                    route: 0,
                    upstreams: want.to_vec()
                }
            );
        }
    }

    #[test]
    fn unavailable_upstreams_are_skipped() {
        let router = Router::new(vec![rule("44", &[("a", 3), ("b", 1), ("backup", 0)])]).unwrap();
        // `a` down: every weighted pick goes to `b`, then the backup.
        for _ in 0..5 {
            assert_eq!(
                candidates(&router, "4477", &["b", "backup"]),
                RouteDecision::Candidates {
                    route: 0,
                    upstreams: vec!["b", "backup"]
                }
            );
        }
        // Only the weight-0 backup is up: it is the only candidate.
        assert_eq!(
            candidates(&router, "4477", &["backup"]),
            RouteDecision::Candidates {
                route: 0,
                upstreams: vec!["backup"]
            }
        );
        // Nothing up.
        assert_eq!(
            candidates(&router, "4477", &[]),
            RouteDecision::NoUpstreamAvailable { route: 0 }
        );
        assert_eq!(
            candidates(&router, "4477", &["elsewhere"]),
            RouteDecision::NoUpstreamAvailable { route: 0 }
        );
        // No route beats no upstream.
        assert_eq!(candidates(&router, "33", &[]), RouteDecision::NoRoute);
    }

    #[test]
    fn weighted_share_of_a_down_upstream_goes_to_the_others() {
        let router = Router::new(vec![rule("", &[("a", 2), ("b", 1), ("c", 1)])]).unwrap();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for _ in 0..1000 {
            if let RouteDecision::Candidates { upstreams, .. } = candidates(&router, "1", &["a", "c"]) {
                *counts.entry(upstreams[0]).or_default() += 1;
            }
        }
        assert_eq!(
            (counts.get("a"), counts.get("b"), counts.get("c")),
            (Some(&667), None, Some(&333))
        );
    }

    #[test]
    fn validation_errors_name_the_route() {
        let ok = || rule("1", &[("a", 1)]);
        assert_eq!(
            Router::new(vec![ok(), rule("2", &[])]).unwrap_err(),
            RouteError::NoUpstreams { route: 1 }
        );
        assert_eq!(
            Router::new(vec![ok(), ok2("2"), rule("3", &[("a", 0), ("b", 0)])]).unwrap_err(),
            RouteError::AllWeightsZero { route: 2 }
        );
        assert_eq!(
            Router::new(vec![rule("1", &[("a", 1), ("a", 2)])]).unwrap_err(),
            RouteError::DuplicateUpstream {
                route: 0,
                name: "a".into()
            }
        );
        assert_eq!(
            Router::new(vec![rule("1", &[("", 1)])]).unwrap_err(),
            RouteError::EmptyUpstreamName { route: 0 }
        );
        assert_eq!(
            Router::new(vec![for_clients(ok(), &[])]).unwrap_err(),
            RouteError::EmptySystemIds { route: 0 }
        );
        assert_eq!(
            Router::new(vec![for_sources(ok(), &[])]).unwrap_err(),
            RouteError::EmptySourcePrefixes { route: 0 }
        );
        let msg = RouteError::AllWeightsZero { route: 2 }.to_string();
        assert!(msg.contains("routes[2]"), "{msg}");

        fn ok2(prefix: &str) -> RouteConfig {
            rule(prefix, &[("b", 1)])
        }
    }

    #[test]
    fn duplicate_matchers_are_rejected() {
        // Same prefix, no restriction (a leading `+` does not make it different).
        assert_eq!(
            Router::new(vec![
                rule("44", &[("a", 1)]),
                rule("2", &[("a", 1)]),
                rule("+44", &[("b", 1)])
            ])
            .unwrap_err(),
            RouteError::DuplicateMatcher { route: 2, first: 0 }
        );
        // Same sets of system_ids and source prefixes in another order, duplicates included.
        let a = for_sources(for_clients(rule("44", &[("a", 1)]), &["x", "y"]), &["B", "A"]);
        let b = for_sources(for_clients(rule("44", &[("b", 1)]), &["y", "x", "y"]), &["A", "B"]);
        assert_eq!(
            Router::new(vec![a.clone(), b]).unwrap_err(),
            RouteError::DuplicateMatcher { route: 1, first: 0 }
        );
        // Different restrictions on the same prefix are fine.
        Router::new(vec![
            rule("44", &[("a", 1)]),
            for_clients(rule("44", &[("a", 1)]), &["x"]),
            for_sources(rule("44", &[("a", 1)]), &["A"]),
            a,
        ])
        .unwrap();
    }

    #[test]
    fn unknown_upstreams_are_reported() {
        let router = Router::new(vec![rule("1", &[("a", 1)]), rule("2", &[("b", 1), ("zz", 1)])]).unwrap();
        assert_eq!(router.upstream_names(), ["a", "b", "zz"]);
        assert_eq!(
            router.check_upstreams(|n| n == "a" || n == "b"),
            Err(RouteError::UnknownUpstream {
                route: 1,
                name: "zz".into()
            })
        );
        assert_eq!(router.check_upstreams(|_| true), Ok(()));
    }

    #[test]
    fn thousands_of_prefixes() {
        // 10,000 five-digit prefixes plus a few shorter ones; lookups stay exact.
        let mut routes: Vec<RouteConfig> = (0..10_000)
            .map(|i| rule(&format!("9{i:04}"), &[(&format!("u{i}"), 1)]))
            .collect();
        routes.push(rule("9", &[("nine", 1)]));
        routes.push(rule("", &[("default", 1)]));
        let router = Router::new(routes).unwrap();
        assert_eq!(router.lengths, vec![5, 1, 0]);
        for i in (0..10_000).step_by(97) {
            let dest = format!("9{i:04}123456");
            assert_eq!(
                router.route("c", "s", &dest, all),
                RouteDecision::Candidates {
                    route: i,
                    upstreams: vec![format!("u{i}").as_str()]
                }
            );
        }
        assert_eq!(chosen(&router, "c", "s", "9123"), Some(10_000));
        assert_eq!(chosen(&router, "c", "s", "8"), Some(10_001));
    }

    #[test]
    fn router_is_shareable_between_workers() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Router>();
        let router = std::sync::Arc::new(Router::new(vec![rule("", &[("a", 3), ("b", 1)])]).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let router = router.clone();
                std::thread::spawn(move || {
                    let mut a = 0;
                    for _ in 0..1000 {
                        if let RouteDecision::Candidates { upstreams, .. } = router.route("c", "s", "1", all) {
                            a += usize::from(upstreams[0] == "a");
                        }
                    }
                    a
                })
            })
            .collect();
        let a: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(a, 3000, "4000 picks split 3:1 across threads");
    }
}
