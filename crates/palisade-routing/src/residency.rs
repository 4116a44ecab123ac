//! Data residency: the labels a deployment carries and the rules tenants
//! and routes set on them. A rule is an allow-list per dimension; an empty
//! list does not restrict that dimension.
//!
//! Must not: relax anything. Combining rules only ever narrows them
//! ([`Residency::and`]), and a deployment without a label is outside every
//! non-empty allow-list for that label (fail closed).

/// Where a deployment runs and what it may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// E.g. `eu-west`.
    pub region: Option<String>,
    /// E.g. `azure`, `self-hosted`.
    pub provider: Option<String>,
    /// The data classes this deployment is cleared for, e.g. `pii`.
    pub data_classes: Vec<String>,
}

/// Allowed regions, providers and data classes. Each list that is not
/// empty must be met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residency {
    /// Allowed regions.
    pub regions: Vec<String>,
    /// Allowed providers.
    pub providers: Vec<String>,
    /// Data classes the deployment must be cleared for (all of them).
    pub data_classes: Vec<String>,
}

impl Residency {
    /// True when the rule restricts nothing.
    pub fn is_open(&self) -> bool {
        self.regions.is_empty() && self.providers.is_empty() && self.data_classes.is_empty()
    }

    /// Both rules at once: allow-lists intersect, required data classes
    /// add up. An intersection that ends up empty where both sides had a
    /// list is kept as "nothing allowed", not "anything".
    pub fn and(&self, other: &Residency) -> Residency {
        fn meet(a: &[String], b: &[String]) -> (Vec<String>, bool) {
            match (a.is_empty(), b.is_empty()) {
                (true, _) => (b.to_vec(), false),
                (_, true) => (a.to_vec(), false),
                _ => {
                    let both: Vec<String> = a.iter().filter(|x| b.contains(x)).cloned().collect();
                    let none = both.is_empty();
                    (both, none)
                }
            }
        }
        let (mut regions, no_region) = meet(&self.regions, &other.regions);
        let (mut providers, no_provider) = meet(&self.providers, &other.providers);
        // An impossible rule must stay impossible: a sentinel no label can
        // equal (labels come from config keys, which cannot hold NUL).
        if no_region {
            regions = vec!["\0none".to_owned()];
        }
        if no_provider {
            providers = vec!["\0none".to_owned()];
        }
        let mut data_classes = self.data_classes.clone();
        for c in &other.data_classes {
            if !data_classes.contains(c) {
                data_classes.push(c.clone());
            }
        }
        Residency {
            regions,
            providers,
            data_classes,
        }
    }

    /// May a request under this rule go to a deployment with `labels`?
    pub fn allows(&self, labels: &Labels) -> bool {
        let listed = |allowed: &[String], value: &Option<String>| {
            allowed.is_empty() || value.as_ref().is_some_and(|v| allowed.contains(v))
        };
        listed(&self.regions, &labels.region)
            && listed(&self.providers, &labels.provider)
            && self
                .data_classes
                .iter()
                .all(|c| labels.data_classes.contains(c))
    }

    /// A short description for audit lines and error messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.regions.is_empty() {
            parts.push(format!("regions={}", self.regions.join("|")));
        }
        if !self.providers.is_empty() {
            parts.push(format!("providers={}", self.providers.join("|")));
        }
        if !self.data_classes.is_empty() {
            parts.push(format!("data_classes={}", self.data_classes.join("+")));
        }
        if parts.is_empty() {
            "any".to_owned()
        } else {
            parts.join(" ").replace('\0', "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn labels(region: Option<&str>, provider: Option<&str>, classes: &[&str]) -> Labels {
        Labels {
            region: region.map(Into::into),
            provider: provider.map(Into::into),
            data_classes: s(classes),
        }
    }

    #[test]
    fn allow_lists_and_required_classes() {
        let rule = Residency {
            regions: s(&["eu"]),
            providers: vec![],
            data_classes: s(&["pii"]),
        };
        let table = [
            (labels(Some("eu"), None, &["pii"]), true),
            (labels(Some("eu"), Some("azure"), &["pii", "phi"]), true),
            (labels(Some("us"), None, &["pii"]), false),
            (labels(Some("eu"), None, &[]), false),
            // Unlabelled: outside a non-empty allow-list.
            (labels(None, None, &["pii"]), false),
        ];
        for (l, want) in table {
            assert_eq!(rule.allows(&l), want, "{l:?}");
        }
        assert!(Residency::default().allows(&Labels::default()));
    }

    #[test]
    fn combining_narrows_and_disjoint_lists_allow_nothing() {
        let tenant = Residency {
            regions: s(&["eu", "us"]),
            ..Residency::default()
        };
        let route = Residency {
            regions: s(&["eu"]),
            providers: s(&["self"]),
            ..Residency::default()
        };
        let both = tenant.and(&route);
        assert!(both.allows(&labels(Some("eu"), Some("self"), &[])));
        assert!(!both.allows(&labels(Some("us"), Some("self"), &[])));
        let disjoint = Residency {
            regions: s(&["ap"]),
            ..Residency::default()
        }
        .and(&route);
        for region in ["eu", "ap", "us"] {
            assert!(!disjoint.allows(&labels(Some(region), Some("self"), &[])));
        }
        assert!(!disjoint.is_open());
    }
}
