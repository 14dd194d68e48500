//! `[[mo_routes]]`: which client gets a mobile-originated message.
//!
//! The rule whose `prefix` is the longest prefix of the message's
//! destination address wins (`""` matches every address); a leading `+` is
//! ignored on both sides, so `+44` and `44` are the same rule.

use crate::config::MoRouteConfig;

/// The `[[mo_routes]]` table, longest prefix first.
#[derive(Clone, Debug, Default)]
pub struct MoRouter {
    rules: Vec<(String, String)>,
}

impl MoRouter {
    pub fn new(routes: &[MoRouteConfig]) -> Self {
        let mut rules: Vec<(String, String)> = routes
            .iter()
            .map(|r| (strip_plus(&r.prefix).to_string(), r.system_id.clone()))
            .collect();
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.0.len()));
        MoRouter { rules }
    }

    /// The client for a message to `dest`, `None` when no rule matches.
    pub fn route(&self, dest: &str) -> Option<&str> {
        let dest = strip_plus(dest.trim());
        self.rules
            .iter()
            .find(|(prefix, _)| dest.starts_with(prefix.as_str()))
            .map(|(_, system_id)| system_id.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn strip_plus(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, system_id: &str) -> MoRouteConfig {
        MoRouteConfig {
            prefix: prefix.into(),
            system_id: system_id.into(),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let r = MoRouter::new(&[rule("44", "uk"), rule("", "any"), rule("+4477", "mobile")]);
        assert_eq!(r.route("447700900001"), Some("mobile"));
        assert_eq!(r.route("+447700900001"), Some("mobile"));
        assert_eq!(r.route("441234"), Some("uk"));
        assert_eq!(r.route("33612"), Some("any"));
        assert_eq!(r.route(""), Some("any"));
        let strict = MoRouter::new(&[rule("44", "uk")]);
        assert_eq!(strict.route("33612"), None);
        assert!(MoRouter::new(&[]).route("44").is_none());
    }
}
