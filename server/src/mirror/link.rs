//! A cluster link's selection rules, no I/O: which source topics it mirrors (literal names,
//! prefixes, regular expressions, minus exclusions), under which name on the destination
//! (an optional prefix, MirrorMaker 2's `source.orders` style), and which consumer groups'
//! offsets it syncs.

/// A pattern naming topics or groups: `orders` (that name), `orders.*` (every name starting
/// `orders.`), `re:^orders\.(eu|us)$` (a regular expression, matched against the whole
/// name), `*` (every name).
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Exactly this name.
    Literal(String),
    /// Every name starting with this (`*` alone: every name).
    Prefix(String),
    /// Names the expression matches in full.
    Regex(regex::Regex),
}

/// Longest pattern text (a regular expression is compiled from it).
pub const PATTERN_BYTES_MAX: usize = 1024;
/// Patterns in one list.
pub const PATTERNS_MAX: usize = 100;

impl Pattern {
    /// The pattern `text` writes.
    ///
    /// # Errors
    /// An empty or over-long pattern, or a regular expression that does not compile
    /// (compiled with a size limit, so a hostile one cannot take the broker's memory).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text.is_empty() || text.len() > PATTERN_BYTES_MAX {
            return Err(format!(
                "a pattern is 1 to {PATTERN_BYTES_MAX} bytes, got {}",
                text.len()
            ));
        }
        if let Some(expression) = text.strip_prefix("re:") {
            let whole = format!("^(?:{expression})$");
            return regex::RegexBuilder::new(&whole)
                .size_limit(1 << 20)
                .build()
                .map(Pattern::Regex)
                .map_err(|e| format!("{text:?}: {e}"));
        }
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(Pattern::Prefix(prefix.to_owned())),
            Some(_) => Err(format!("{text:?}: `*` only ends a prefix (or use re:…)")),
            None if text.contains('*') => {
                Err(format!("{text:?}: `*` only ends a prefix (or use re:…)"))
            }
            None => Ok(Pattern::Literal(text.to_owned())),
        }
    }

    /// A comma-separated list of patterns.
    ///
    /// # Errors
    /// A bad pattern, or more than [`PATTERNS_MAX`].
    pub fn parse_list(text: &str) -> Result<Vec<Pattern>, String> {
        let patterns: Vec<Pattern> = text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Pattern::parse)
            .collect::<Result<_, _>>()?;
        if patterns.len() > PATTERNS_MAX {
            return Err(format!("at most {PATTERNS_MAX} patterns"));
        }
        Ok(patterns)
    }

    /// The pattern as [`Pattern::parse`] reads it.
    pub fn text(&self) -> String {
        match self {
            Pattern::Literal(literal) => literal.clone(),
            Pattern::Prefix(prefix) => format!("{prefix}*"),
            Pattern::Regex(expression) => {
                let whole = expression.as_str();
                let inner = whole
                    .strip_prefix("^(?:")
                    .and_then(|rest| rest.strip_suffix(")$"))
                    .unwrap_or(whole);
                format!("re:{inner}")
            }
        }
    }

    /// Whether the pattern selects `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Literal(literal) => literal == name,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Pattern::Regex(expression) => expression.is_match(name),
        }
    }
}

/// What a link mirrors.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Source topics mirrored.
    pub topics: Vec<Pattern>,
    /// Source topics left out even when `topics` selects them.
    pub exclude: Vec<Pattern>,
    /// Consumer groups whose committed offsets are synced.
    pub groups: Vec<Pattern>,
    /// Put before each mirror topic's name on the destination (`source.`), for
    /// active/active links whose topics must not collide.
    pub topic_prefix: Option<String>,
}

impl Selection {
    /// The destination name of source topic `topic`, when the link mirrors it. Internal
    /// topics (`__consumer_offsets`, any `__` name) are never mirrored: offsets are synced
    /// per group instead.
    pub fn mirror_name(&self, topic: &str) -> Option<String> {
        if topic.starts_with("__") {
            return None;
        }
        if self.exclude.iter().any(|p| p.matches(topic)) {
            return None;
        }
        if !self.topics.iter().any(|p| p.matches(topic)) {
            return None;
        }
        let name = format!(
            "{}{topic}",
            self.topic_prefix.as_deref().unwrap_or_default()
        );
        keel_protocol::api::validate_topic_name(&name).ok()?;
        Some(name)
    }

    /// The source topic a destination topic `name` mirrors under this link's prefix.
    pub fn source_name<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.topic_prefix.as_deref().unwrap_or_default())
    }

    /// Whether group `group`'s offsets are synced.
    pub fn syncs_group(&self, group: &str) -> bool {
        self.groups.iter().any(|p| p.matches(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(topics: &str, exclude: &str, prefix: Option<&str>) -> Selection {
        Selection {
            topics: Pattern::parse_list(topics).unwrap(),
            exclude: Pattern::parse_list(exclude).unwrap(),
            groups: Pattern::parse_list("billing-*").unwrap(),
            topic_prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn literals_prefixes_and_expressions_select_minus_exclusions() {
        let link = selection(
            "payments,orders.*,re:audit-(eu|us)",
            "orders.tmp*,re:.*-test",
            None,
        );
        let mirrored: Vec<&str> = [
            "payments",
            "payments2",
            "orders.eu",
            "orders.tmp.1",
            "orders.eu-test",
            "audit-eu",
            "audit-eu2",
            "__consumer_offsets",
        ]
        .into_iter()
        .filter(|t| link.mirror_name(t).is_some())
        .collect();
        assert_eq!(mirrored, ["payments", "orders.eu", "audit-eu"]);
        assert!(link.syncs_group("billing-eu") && !link.syncs_group("ops"));
        let everything = selection("*", "", None);
        assert!(everything.mirror_name("anything").is_some());
        assert!(everything.mirror_name("__internal").is_none());
    }

    #[test]
    fn a_prefix_names_the_mirror_and_back() {
        let link = selection("orders.*", "", Some("east."));
        assert_eq!(
            link.mirror_name("orders.eu").as_deref(),
            Some("east.orders.eu")
        );
        assert_eq!(link.source_name("east.orders.eu"), Some("orders.eu"));
        assert_eq!(link.source_name("orders.eu"), None);
        // A prefixed name past Kafka's 249 characters is not mirrored.
        let long = format!("orders.{}", "x".repeat(240));
        assert!(link.mirror_name(&long).is_none());
    }

    #[test]
    fn bad_patterns_are_refused_naming_the_problem() {
        for (text, says) in [
            ("", "1 to"),
            ("or*ders", "only ends a prefix"),
            ("*orders*", "only ends a prefix"),
            ("re:(", "re:("),
        ] {
            let error = Pattern::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        let huge = format!("re:{}", "a{1000}{1000}");
        assert!(
            Pattern::parse(&huge).is_err(),
            "a regex past the size limit"
        );
        let many = vec!["t"; PATTERNS_MAX + 1].join(",");
        assert!(Pattern::parse_list(&many).is_err());
    }
}
