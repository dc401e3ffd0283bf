//! Building the applied-state reports (`contracts/mqtt-applied-state.schema.json`)
//! this instance publishes, following the table "Applied state" of
//! `contracts/README.md`. Free of I/O: the MQTT task publishes what this
//! module builds, so every rule is testable without a broker.

use std::collections::BTreeMap;

use config_manager_core::applied::{AppliedReport, AppliedStatus, ClientInfo, InstanceId};
use config_manager_core::domain::{format_rfc3339, ServiceName, Version};
use config_manager_core::envelope::freshness::AppliedState;
use time::OffsetDateTime;

/// The name this library reports in `client.name`.
pub const CLIENT_NAME: &str = "config-manager-client";

/// The version this library reports in `client.version`.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version in force and when it was applied (RFC 3339).
pub type Running = (AppliedState, String);

/// What this instance runs and the last report about it. Public so the
/// shared vectors (`contracts/vectors/applied-state.json`) and config-agent
/// can drive it.
#[derive(Debug, Clone)]
pub struct Reporter {
    service: ServiceName,
    instance: InstanceId,
    /// The version in force and when it was applied (`None`: defaults).
    running: Option<Running>,
    /// The report that describes the instance now (`None` before anything
    /// was applied or refused: nothing to say yet).
    current: Option<AppliedReport>,
    /// `client.name` of every report ([`CLIENT_NAME`] unless a runner on top
    /// of the library, such as config-agent, names itself).
    client_name: String,
    /// Fields the instance's environment holds (`pinned`), in every report.
    pinned: Option<BTreeMap<String, String>>,
}

impl Reporter {
    /// A reporter for the start-up config: `applied` when it is versioned
    /// (REST or the on-disk copy), nothing yet on defaults.
    pub fn new(
        service: ServiceName,
        instance: InstanceId,
        initial: Option<&AppliedState>,
        now: OffsetDateTime,
    ) -> Self {
        let mut reporter = Self {
            service,
            instance,
            running: None,
            current: None,
            client_name: CLIENT_NAME.to_owned(),
            pinned: None,
        };
        if let Some(state) = initial {
            reporter.applied(state, now);
        }
        reporter
    }

    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// Reports name `name` as `client.name` from now on (a short token of the
    /// contract's grammar, e.g. `config-agent`); the current report is
    /// rebuilt with it.
    pub fn set_client_name(&mut self, name: &str) {
        self.client_name = name.to_owned();
        self.refresh();
    }

    /// Reports carry `pinned` (field key → variable) from now on; an empty
    /// map leaves the member out. The caller keeps it within the contract's
    /// bounds (64 entries, key and variable grammars).
    pub fn set_pinned(&mut self, pinned: BTreeMap<String, String>) {
        self.pinned = (!pinned.is_empty()).then_some(pinned);
        self.refresh();
    }

    /// What the instance runs and since when (`None`: defaults).
    pub fn running(&self) -> Option<&Running> {
        self.running.as_ref()
    }

    /// Rebuilds the current report after a change of what every report says.
    fn refresh(&mut self) {
        if let Some(current) = &mut self.current {
            current.client.name = self.client_name.clone();
            current.pinned = self.pinned.clone();
        }
    }

    /// The report describing the instance now, if any.
    pub fn current(&self) -> Option<&AppliedReport> {
        self.current.as_ref()
    }

    /// A new version took effect; returns the `applied` report.
    pub fn applied(&mut self, state: &AppliedState, now: OffsetDateTime) -> AppliedReport {
        self.running = Some((state.clone(), format_rfc3339(now)));
        let report = self.build(AppliedStatus::Applied, None, None);
        self.current = Some(report.clone());
        report
    }

    /// An update was refused with `label`; the instance keeps what it runs.
    /// Returns the `rejected` report, or `None` when it says exactly what the
    /// last one said (the same update refused again for the same reason, as a
    /// flood of copies would be): nothing new to publish.
    pub fn rejected(
        &mut self,
        label: &str,
        rejected_version: Option<Version>,
    ) -> Option<AppliedReport> {
        let report = self.build(
            AppliedStatus::Rejected,
            Some(label.to_owned()),
            rejected_version.filter(|v| *v >= Version::FIRST),
        );
        if self.current.as_ref() == Some(&report) {
            return None;
        }
        self.current = Some(report.clone());
        Some(report)
    }

    /// Like [`Reporter::rejected`], naming the fields that failed the
    /// service's own validation (`fields`, names only; at most 64 kept).
    pub fn rejected_fields(
        &mut self,
        label: &str,
        rejected_version: Option<Version>,
        fields: &[String],
    ) -> Option<AppliedReport> {
        let mut report = self.build(
            AppliedStatus::Rejected,
            Some(label.to_owned()),
            rejected_version.filter(|v| *v >= Version::FIRST),
        );
        let mut names: Vec<String> = fields.to_vec();
        names.sort();
        names.dedup();
        names.truncate(config_manager_core::applied::MAX_REPORT_FIELDS);
        report.fields = (!names.is_empty()).then_some(names);
        if self.current.as_ref() == Some(&report) {
            return None;
        }
        self.current = Some(report.clone());
        Some(report)
    }

    /// A version that took effect was given up (config-agent's crash
    /// rollback): the instance runs `back_to` again, and the `rejected`
    /// report with `label` names `rejected_version`.
    pub fn rolled_back(
        &mut self,
        back_to: Option<Running>,
        label: &str,
        rejected_version: Option<Version>,
    ) -> AppliedReport {
        self.running = back_to;
        let report = self.build(
            AppliedStatus::Rejected,
            Some(label.to_owned()),
            rejected_version.filter(|v| *v >= Version::FIRST),
        );
        self.current = Some(report.clone());
        report
    }

    /// The `offline` form: the MQTT last will (set at connect time, with the
    /// version known then) and the report of a clean stop.
    pub fn offline(&self) -> AppliedReport {
        self.build(AppliedStatus::Offline, None, None)
    }

    fn build(
        &self,
        status: AppliedStatus,
        reason: Option<String>,
        rejected_version: Option<Version>,
    ) -> AppliedReport {
        let (config_epoch, version, applied_at) = match &self.running {
            Some((state, at)) => (
                Some(state.epoch.clone()),
                Some(state.version),
                Some(at.clone()),
            ),
            None => (None, None, None),
        };
        AppliedReport {
            service: self.service.clone(),
            instance_id: self.instance.clone(),
            config_epoch,
            version,
            status,
            reason,
            rejected_version,
            applied_at,
            client: ClientInfo {
                name: self.client_name.clone(),
                version: CLIENT_VERSION.to_owned(),
            },
            pinned: self.pinned.clone(),
            fields: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config_manager_core::domain::Epoch;

    const EPOCH: &str = "5b0c3f0e-8a51-4c8e-9a43-7f6d2b1e0a01";

    fn v(n: i64) -> Version {
        Version::new(n).unwrap()
    }

    fn reporter(initial: Option<Version>) -> Reporter {
        let state = initial.map(|version| AppliedState {
            epoch: Epoch::parse(EPOCH).unwrap(),
            version,
            checksum: None,
        });
        Reporter::new(
            ServiceName::parse("tts-worker").unwrap(),
            InstanceId::parse("robot-7-tts-worker").unwrap(),
            state.as_ref(),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    /// Every report must pass the manager's parser.
    fn valid(report: &AppliedReport) -> AppliedReport {
        AppliedReport::parse(
            report.to_json().as_bytes(),
            &report.service,
            &report.instance_id,
        )
        .unwrap()
    }

    #[test]
    fn start_up_on_a_versioned_config_is_applied() {
        let r = reporter(Some(v(7)));
        let report = valid(r.current().unwrap());
        assert_eq!(report.status, AppliedStatus::Applied);
        assert_eq!(report.version, Some(v(7)));
        assert_eq!(report.config_epoch, Some(Epoch::parse(EPOCH).unwrap()));
        assert_eq!(
            report.applied_at.as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(report.client.name, "config-manager-client");
        assert_eq!(report.client.version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn start_up_on_defaults_reports_nothing_until_something_happens() {
        let mut r = reporter(None);
        assert!(r.current().is_none());
        let offline = valid(&r.offline());
        assert_eq!(offline.status, AppliedStatus::Offline);
        assert_eq!((offline.version, offline.applied_at), (None, None));
        let rejected = valid(&r.rejected("bad_signature", Some(v(3))).unwrap());
        assert_eq!(rejected.status, AppliedStatus::Rejected);
        assert_eq!(rejected.version, None);
        assert_eq!(rejected.reason.as_deref(), Some("bad_signature"));
        assert_eq!(rejected.rejected_version, Some(v(3)));
    }

    #[test]
    fn rejection_keeps_the_running_version_and_repeats_are_not_republished() {
        let mut r = reporter(Some(v(7)));
        let report = valid(&r.rejected("invalid_config", Some(v(8))).unwrap());
        assert_eq!(report.version, Some(v(7)));
        assert_eq!(report.rejected_version, Some(v(8)));
        assert!(r.rejected("invalid_config", Some(v(8))).is_none());
        let other = r.rejected("not_json", None).unwrap();
        assert_eq!(valid(&other).rejected_version, None);
        // A version 0 is never reported (the contract's versions start at 1).
        assert_eq!(
            valid(&r.rejected("stale", Some(v(0))).unwrap()).rejected_version,
            None
        );
    }

    #[test]
    fn applied_update_then_offline_names_the_new_version() {
        let mut r = reporter(Some(v(7)));
        let _ = r.rejected("replay", Some(v(3)));
        let state = AppliedState {
            epoch: Epoch::parse(EPOCH).unwrap(),
            version: v(9),
            checksum: None,
        };
        let later = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(61);
        let applied = valid(&r.applied(&state, later));
        assert_eq!(
            (applied.status, applied.version, applied.reason),
            (AppliedStatus::Applied, Some(v(9)), None)
        );
        assert_eq!(
            applied.applied_at.as_deref(),
            Some("1970-01-01T00:01:01.000Z")
        );
        let offline = valid(&r.offline());
        assert_eq!(
            (offline.status, offline.version),
            (AppliedStatus::Offline, Some(v(9)))
        );
        assert_eq!(offline.applied_at, applied.applied_at);
    }

    #[test]
    fn pinned_fields_client_name_and_rollback() {
        let mut r = reporter(Some(v(7)));
        r.set_client_name("config-agent");
        r.set_pinned(BTreeMap::from([("tts_volume".into(), "TTS_VOLUME".into())]));
        let current = valid(r.current().unwrap());
        assert_eq!(current.client.name, "config-agent");
        assert_eq!(current.pinned.as_ref().unwrap()["tts_volume"], "TTS_VOLUME");
        assert_eq!(valid(&r.offline()).pinned, current.pinned);
        let failed = r
            .rejected_fields(
                "invalid_config",
                Some(v(8)),
                &["b".into(), "a".into(), "a".into()],
            )
            .unwrap();
        assert_eq!(valid(&failed).fields, Some(vec!["a".into(), "b".into()]));
        let before = r.running().cloned();
        let state = AppliedState {
            epoch: Epoch::parse(EPOCH).unwrap(),
            version: v(9),
            checksum: None,
        };
        let _ = r.applied(&state, OffsetDateTime::UNIX_EPOCH);
        let back = valid(&r.rolled_back(before, "crashed", Some(v(9))));
        assert_eq!(
            (back.status, back.version, back.rejected_version),
            (AppliedStatus::Rejected, Some(v(7)), Some(v(9)))
        );
        assert_eq!(back.reason.as_deref(), Some("crashed"));
        r.set_pinned(BTreeMap::new());
        assert_eq!(valid(r.current().unwrap()).pinned, None);
    }
}
