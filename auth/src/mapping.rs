//! Kafka's `ssl.principal.mapping.rules`: how the subject of a client's TLS certificate
//! (an RFC 2253 distinguished name) becomes a principal's name.

/// Kafka's `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU]` entries and
/// `DEFAULT`, comma-separated, tried in order; the first whose pattern matches the whole
/// DN gives the name (`DEFAULT`: the DN itself).
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        whole: regex::Regex,
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl PrincipalRules {
    /// Parses `rules`.
    ///
    /// # Errors
    /// An entry that is neither `DEFAULT` nor a well-formed `RULE:`, or a bad pattern.
    pub fn parse(rules: &str) -> Result<PrincipalRules, String> {
        let mut out = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("{rest:?}: RULE:pattern/replacement/[LU]"))?;
                let (replacement, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("{rest:?}: RULE:pattern/replacement/[LU]"))?;
                let case = after.chars().next().filter(|c| matches!(c, 'L' | 'U'));
                rest = &after[case.map_or(0, char::len_utf8)..];
                let compile = |p: &str| regex::Regex::new(p).map_err(|e| format!("{p:?}: {e}"));
                out.push(Rule::Replace {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: compile(pattern)?,
                    replacement: replacement.to_owned(),
                    case,
                });
            } else {
                return Err(format!(
                    "{rest:?}: expected DEFAULT or RULE:pattern/replacement/[LU]"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("{rest:?}: rules are separated by commas")),
            }
        }
        if out.is_empty() {
            out.push(Rule::Default);
        }
        Ok(PrincipalRules(out))
    }

    /// The name `dn` maps to (the DN itself when no rule matches, as Kafka's `DEFAULT`).
    pub fn apply(&self, dn: &str) -> String {
        for rule in &self.0 {
            match rule {
                Rule::Default => return dn.to_owned(),
                Rule::Replace {
                    whole,
                    pattern,
                    replacement,
                    case,
                } if whole.is_match(dn) => {
                    let name = pattern.replace_all(dn, replacement.as_str()).into_owned();
                    return match case {
                        Some('L') => name.to_lowercase(),
                        Some('U') => name.to_uppercase(),
                        _ => name,
                    };
                }
                Rule::Replace { .. } => {}
            }
        }
        dn.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_a_subject_as_kafka_does() {
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([a-z]+),O=(.*)$/${1}@${2}/,DEFAULT",
        )
        .unwrap();
        assert_eq!(rules.apply("CN=Orders,OU=ServiceUsers,O=Keel"), "orders");
        assert_eq!(rules.apply("CN=bob,O=Keel"), "bob@Keel");
        assert_eq!(rules.apply("CN=Bob,O=Keel"), "CN=Bob,O=Keel");
        let default = PrincipalRules::parse("").unwrap();
        assert_eq!(default.apply("CN=x"), "CN=x");
        assert!(PrincipalRules::parse("RULE:abc").is_err());
        assert!(PrincipalRules::parse("RULE:(/x/").is_err());
        assert!(PrincipalRules::parse("DEFAULT RULE:a/b/").is_err());
    }
}
