//! The alert half of the configuration: routes, the `[alerts]` table and `[[alert_rule]]`s,
//! checked with line and column like the rest.

use super::*;

impl Validator<'_> {
    pub(super) fn route(&mut self, name: Spanned<String>, raw: Spanned<RawRoute>) -> Option<Route> {
        let before = self.problems.len();
        let route_span = raw.span();
        let raw = raw.into_inner();
        let route_name = name.get_ref().trim().to_string();
        if !valid_route_name(&route_name) {
            self.at(
                name.span(),
                format!(
                    "route name \"{}\" must be 1-64 letters, digits, '-' or '_'",
                    clip(&route_name)
                ),
            );
        }
        let kind_text = raw.kind.get_ref().trim();
        let kind = RouteKind::parse(kind_text);
        if kind.is_none() {
            let msg = format!(
                "kind must be one of teams, teams-legacy, email, webhook (found \"{}\")",
                clip(kind_text)
            );
            self.at(raw.kind.span(), msg);
        }
        let url_env = raw.url_env.as_ref().and_then(|v| self.env_name("url_env", v));
        let hmac_key_env = raw.hmac_key_env.as_ref().and_then(|v| self.env_name("hmac_key_env", v));
        let smtp_env = raw.smtp_env.as_ref().and_then(|v| self.env_name("smtp_env", v));
        let mut from = None;
        if let Some(f) = &raw.from {
            let v = f.get_ref().trim();
            if is_plausible_email(v) {
                from = Some(v.to_string());
            } else {
                self.at(f.span(), format!("from: \"{}\" is not an e-mail address", clip(v)));
            }
        }
        let mut to = Vec::new();
        for addr in raw.to.iter().flat_map(|t| t.get_ref()) {
            let v = addr.get_ref().trim();
            if is_plausible_email(v) {
                to.push(v.to_string());
            } else {
                self.at(addr.span(), format!("to: \"{}\" is not an e-mail address", clip(v)));
            }
        }

        if let Some(kind) = kind {
            let k = kind.as_str();
            let needs_url = matches!(kind, RouteKind::Teams | RouteKind::TeamsLegacy | RouteKind::Webhook);
            let is_email = kind == RouteKind::Email;
            let is_webhook = kind == RouteKind::Webhook;
            let require = |present: bool, field: &str, what: &str, v: &mut Self| {
                if !present {
                    v.at(
                        route_span.clone(),
                        format!("{k} route \"{route_name}\" needs {field} ({what})"),
                    );
                }
            };
            require(
                !needs_url || raw.url_env.is_some(),
                "url_env",
                "the environment variable holding its URL",
                self,
            );
            require(
                !is_webhook || raw.hmac_key_env.is_some(),
                "hmac_key_env",
                "the environment variable holding its signing key",
                self,
            );
            require(
                !is_email || raw.smtp_env.is_some(),
                "smtp_env",
                "the environment variable holding smtp[s]://user:pass@host:port",
                self,
            );
            match &raw.to {
                None if is_email => require(false, "to", "at least one recipient address", self),
                Some(t) if is_email && t.get_ref().is_empty() => {
                    self.at(
                        t.span(),
                        format!("email route \"{route_name}\" needs at least one address in to"),
                    );
                }
                _ => {}
            }
            // A setting the channel will not use is a misunderstanding worth hearing about now.
            let stray: [(&str, Option<std::ops::Range<usize>>, bool); 5] = [
                ("url_env", raw.url_env.as_ref().map(Spanned::span), needs_url),
                ("hmac_key_env", raw.hmac_key_env.as_ref().map(Spanned::span), is_webhook),
                ("smtp_env", raw.smtp_env.as_ref().map(Spanned::span), is_email),
                ("from", raw.from.as_ref().map(Spanned::span), is_email),
                ("to", raw.to.as_ref().map(Spanned::span), is_email),
            ];
            for (field, span, applies) in stray {
                if let Some(span) = span
                    && !applies
                {
                    self.at(
                        span,
                        format!("{field} does not apply to kind = \"{k}\" (route \"{route_name}\")"),
                    );
                }
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Route {
            name: route_name,
            kind: kind?,
            url_env,
            hmac_key_env,
            smtp_env,
            from,
            to,
        })
    }

    pub(super) fn route_refs(&mut self, field: &str, names: &[Spanned<String>], defined: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let v = n.get_ref().trim();
            if !defined.iter().any(|d| d == v) {
                let known = if defined.is_empty() {
                    "no [routes] are defined".to_string()
                } else {
                    format!("defined: {}", defined.join(", "))
                };
                self.at(
                    n.span(),
                    format!("{field}: \"{}\" is not a defined route ({known})", clip(v)),
                );
            } else if !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
        out
    }

    pub(super) fn alerts(&mut self, raw: RawAlerts, defined: &[String]) -> AlertSettings {
        let d = AlertSettings::default();
        let default_routes = self.route_refs("default_routes", &raw.default_routes, defined);
        let mut owner_tags = Vec::new();
        for t in &raw.owner_tags {
            let v = t.get_ref().trim();
            if v.is_empty() {
                self.at(t.span(), "owner_tags entries must not be empty".to_string());
            } else {
                owner_tags.push(v.to_string());
            }
        }
        let mut suppress_minutes = d.suppress_minutes;
        if let Some(m) = raw.suppress_minutes {
            if *m.get_ref() > MAX_SUPPRESS_MINUTES {
                self.at(
                    m.span(),
                    format!("suppress_minutes must be 0-{MAX_SUPPRESS_MINUTES} (a day at most)"),
                );
            }
            suppress_minutes = m.into_inner();
        }
        let mut digest_minutes = d.digest_minutes;
        if let Some(m) = raw.digest_minutes {
            if !(1..=MAX_DIGEST_MINUTES).contains(m.get_ref()) {
                self.at(m.span(), format!("digest_minutes must be 1-{MAX_DIGEST_MINUTES}"));
            }
            digest_minutes = m.into_inner();
        }
        AlertSettings {
            default_routes,
            owner_tags,
            suppress_minutes,
            digest: raw.digest.unwrap_or(d.digest),
            digest_minutes,
        }
    }

    pub(super) fn alert_rule(&mut self, raw: RawAlertRule, defined: &[String]) -> Option<AlertRule> {
        let before = self.problems.len();
        let stop = raw.stop.unwrap_or(false);
        if raw.routes.get_ref().is_empty() && !stop {
            self.at(
                raw.routes.span(),
                "alert_rule routes must not be empty (routes = [] with stop = true silences matching alerts)"
                    .to_string(),
            );
        }
        let routes = self.route_refs("alert_rule routes", raw.routes.get_ref(), defined);
        let min_severity = match &raw.min_severity {
            None => Some(AlertSeverity::Info),
            Some(s) => {
                let v = s.get_ref().trim();
                let parsed = AlertSeverity::parse(v);
                if parsed.is_none() {
                    self.at(
                        s.span(),
                        format!(
                            "min_severity must be one of info, warning, high, critical (found \"{}\")",
                            clip(v)
                        ),
                    );
                }
                parsed
            }
        };
        let mut outcomes = Vec::new();
        for o in &raw.outcomes {
            let v = o.get_ref().trim();
            if OUTCOMES.contains(&v) {
                outcomes.push(v.to_string());
            } else {
                self.at(
                    o.span(),
                    format!(
                        "outcomes: \"{}\" is not an outcome (one of {})",
                        clip(v),
                        OUTCOMES.join(", ")
                    ),
                );
            }
        }
        let resource_types = raw
            .resource_types
            .iter()
            .filter_map(|t| self.resource_type("resource_types", t))
            .collect();
        let scope = self.scope(raw.scope);
        if self.problems.len() != before {
            return None;
        }
        Some(AlertRule {
            routes,
            min_severity: min_severity?,
            resource_types,
            outcomes,
            scope,
            stop,
        })
    }

    pub(super) fn resource_type(&mut self, field: &str, t: &Spanned<String>) -> Option<String> {
        let v = t.get_ref().trim();
        if catalog::lookup(v).is_some() {
            return Some(v.to_string());
        }
        let supported: Vec<&str> = catalog::entries().iter().map(|e| e.resource_type).collect();
        self.at(
            t.span(),
            format!(
                "{field}: \"{}\" is not a supported resource type (supported: {})",
                clip(v),
                supported.join(", ")
            ),
        );
        None
    }
}
