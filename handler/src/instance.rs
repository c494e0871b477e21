//! Who this process is, in the names it leaves in the store (lease holders, outbox claims).
//!
//! A name is `host/boot/pidns/pid/nonce[/...]`: the host (the Functions instance id or the host
//! name), the kernel's boot id, the pid namespace, the process id and a random suffix. Host names
//! repeat (containers, cloned VMs, `localhost`), and so do pids, so neither alone may decide that
//! a holder is gone. A holder is a crashed predecessor, whose leases and claims are taken at once
//! instead of waiting for them to run out, only when it provably ran on this kernel since its
//! last boot, in this pid namespace, and its pid is gone (or is now ours). Everything else
//! (other hosts, names of the old `host/pid` format, names that do not parse) is left to expire.

use std::fmt;
use std::sync::OnceLock;

/// Written where a fact could not be read; such a name is never judged dead by anyone.
const UNKNOWN: &str = "-";

/// This process's name, as stored in leases and outbox claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceName {
    host: String,
    /// `/proc/sys/kernel/random/boot_id`: changes with every boot, differs between machines.
    boot_id: Option<String>,
    /// The pid namespace's inode: containers on one kernel share the boot id but not pids.
    pid_namespace: Option<String>,
    pid: u32,
    /// Random: two processes that agree on everything above still have different names.
    nonce: String,
}

impl InstanceName {
    /// The name of this process, the same for every component in it (reconcile, outbox sender).
    pub fn current() -> &'static InstanceName {
        static CURRENT: OnceLock<InstanceName> = OnceLock::new();
        CURRENT.get_or_init(InstanceName::detect)
    }

    fn detect() -> InstanceName {
        let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
        // The whole Functions instance id: its first characters are not unique across a scale-out.
        let host = std::env::var("WEBSITE_INSTANCE_ID")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| read("/proc/sys/kernel/hostname"))
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "local".into());
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|target| pid_namespace_of(&target.to_string_lossy()));
        InstanceName {
            host,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid_namespace,
            pid: std::process::id(),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        }
        .sanitised()
    }

    #[cfg(test)]
    pub fn for_test(host: &str, boot_id: Option<&str>, pid_namespace: Option<&str>, pid: u32, nonce: &str) -> Self {
        InstanceName {
            host: host.into(),
            boot_id: boot_id.map(str::to_string),
            pid_namespace: pid_namespace.map(str::to_string),
            pid,
            nonce: nonce.into(),
        }
        .sanitised()
    }

    /// `/` separates the parts, so no part may contain one; a boot id that is not one is unknown.
    fn sanitised(mut self) -> Self {
        self.host = self.host.trim().replace(|c: char| c == '/' || c.is_whitespace(), "_");
        self.boot_id = self.boot_id.filter(|b| is_boot_id(b)).map(|b| b.to_ascii_lowercase());
        self.pid_namespace = self.pid_namespace.filter(|n| is_digits(n));
        self.nonce = self.nonce.replace('/', "_");
        self
    }

    /// Reads the instance part of a stored name (a lease holder has more parts after it).
    fn parse(text: &str) -> Holder {
        let parts: Vec<&str> = text.split('/').collect();
        if let [host, boot, namespace, pid, nonce, ..] = parts.as_slice()
            && (*boot == UNKNOWN || is_boot_id(boot))
            && (*namespace == UNKNOWN || is_digits(namespace))
            && let Ok(pid) = pid.parse::<u32>()
        {
            let known = |s: &str| (s != UNKNOWN).then(|| s.to_string());
            return Holder::Current(InstanceName {
                host: host.to_string(),
                boot_id: known(boot),
                pid_namespace: known(namespace),
                pid,
                nonce: nonce.to_string(),
            });
        }
        if let [_host, pid, ..] = parts.as_slice()
            && is_digits(pid)
        {
            return Holder::Legacy;
        }
        Holder::Unreadable
    }

    /// Whether `holder` names a process that ran on this kernel, in this pid namespace, and is
    /// gone. Only then can its leases and claims be taken before they run out.
    fn is_dead_predecessor(&self, holder: &InstanceName, pid_alive: impl Fn(u32) -> bool) -> bool {
        let same_machine = self.host == holder.host
            && self.boot_id.is_some()
            && self.boot_id == holder.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == holder.pid_namespace;
        if !same_machine {
            return false;
        }
        if holder.pid == self.pid {
            // Our own pid: another nonce is an earlier process whose pid was given to us.
            holder.nonce != self.nonce
        } else {
            !pid_alive(holder.pid)
        }
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.host,
            self.boot_id.as_deref().unwrap_or(UNKNOWN),
            self.pid_namespace.as_deref().unwrap_or(UNKNOWN),
            self.pid,
            self.nonce
        )
    }
}

/// What a stored holder name says about its writer.
enum Holder {
    Current(InstanceName),
    /// `host/pid[/...]`, written before names carried a boot id: it cannot be told apart from a
    /// process of another host with the same name, so it is never taken over early.
    Legacy,
    Unreadable,
}

/// This process's name (see [`InstanceName`]).
pub fn instance_name() -> String {
    InstanceName::current().to_string()
}

/// Whether `holder` (a stored lease holder or outbox claimer) is a crashed predecessor of the
/// instance `me` (a name of the same form; parts after the instance part are ignored).
pub fn held_by_dead_local_process(holder: &str, me: &str) -> bool {
    held_by_dead_local_process_with(holder, me, pid_alive)
}

fn held_by_dead_local_process_with(holder: &str, me: &str, pid_alive: impl Fn(u32) -> bool) -> bool {
    match (InstanceName::parse(holder), InstanceName::parse(me)) {
        (Holder::Current(holder), Holder::Current(me)) => me.is_dead_predecessor(&holder, pid_alive),
        _ => false,
    }
}

/// In this pid namespace (the one `/proc` shows).
fn pid_alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// `pid:[4026531836]` -> `4026531836`.
fn pid_namespace_of(link_target: &str) -> Option<String> {
    link_target
        .strip_prefix("pid:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|n| is_digits(n))
        .map(str::to_string)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A UUID as the kernel prints it (8-4-4-4-12 hex digits).
fn is_boot_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT_A: &str = "87412e2d-326e-4956-8fbc-78d0cb08a85b";
    const BOOT_B: &str = "0c5d2e1f-9a8b-4c7d-8e6f-5a4b3c2d1e0f";
    const NS: &str = "4026531836";

    fn name(host: &str, boot: Option<&str>, pid: u32, nonce: &str) -> String {
        InstanceName::for_test(host, boot, Some(NS), pid, nonce).to_string()
    }

    /// Pids below 100 are alive in these tests, everything else is gone.
    fn dead(holder: &str, me: &str) -> bool {
        held_by_dead_local_process_with(holder, me, |pid| pid < 100)
    }

    #[test]
    fn a_name_carries_host_boot_namespace_pid_and_nonce_and_reads_back() {
        let me = InstanceName::for_test("web-1", Some(BOOT_A), Some(NS), 42, "abc");
        assert_eq!(me.to_string(), format!("web-1/{BOOT_A}/{NS}/42/abc"));
        assert!(matches!(InstanceName::parse(&format!("{me}/lease-9")), Holder::Current(n) if n == me));
        let current = InstanceName::current();
        assert_eq!(current.pid, std::process::id());
        assert_eq!(current, InstanceName::current(), "one name per process");
        assert!(matches!(InstanceName::parse(&instance_name()), Holder::Current(_)));
    }

    #[test]
    fn parts_that_would_break_the_format_are_neutralised() {
        let odd = InstanceName::for_test("a/b c", Some("not-a-boot-id"), Some("x"), 7, "n/1");
        assert_eq!(odd.to_string(), "a_b_c/-/-/7/n_1");
        // A name with unknown facts is never anyone's dead predecessor, nor judges others dead.
        let me = name("a_b_c", Some(BOOT_A), 7, "other");
        assert!(!dead(&odd.to_string(), &me));
        assert!(!dead(&me, &odd.to_string()));
        assert_eq!(pid_namespace_of("pid:[4026531836]").as_deref(), Some(NS));
        assert_eq!(pid_namespace_of("pid:[x]"), None);
    }

    #[test]
    fn only_a_gone_process_of_this_boot_and_namespace_is_a_crashed_predecessor() {
        let me = name("web-1", Some(BOOT_A), 50, "me");
        assert!(dead(&name("web-1", Some(BOOT_A), 999, "x"), &me), "pid gone");
        assert!(
            dead(&format!("{}/lease-7", name("web-1", Some(BOOT_A), 999, "x")), &me),
            "a lease holder of it"
        );
        assert!(
            dead(&name("web-1", Some(BOOT_A), 50, "earlier"), &me),
            "our pid, reused"
        );
        assert!(!dead(&me, &me), "this process");
        assert!(
            !dead(&format!("{me}/lease-1"), &format!("{me}/lease-2")),
            "this process's lease"
        );
        assert!(!dead(&name("web-1", Some(BOOT_A), 7, "x"), &me), "a live process");
        assert!(
            !dead(&name("web-1", Some(BOOT_B), 999, "x"), &me),
            "another machine with the same host name"
        );
        assert!(!dead(&name("web-1", Some(BOOT_B), 50, "x"), &me), "… and the same pid");
        assert!(!dead(&name("web-2", Some(BOOT_A), 999, "x"), &me), "another host name");
        let other_namespace = InstanceName::for_test("web-1", Some(BOOT_A), Some("4026532000"), 999, "x");
        assert!(!dead(&other_namespace.to_string(), &me), "another container's pids");
        assert!(!dead(&name("web-1", None, 999, "x"), &me), "no boot id: not provable");
    }

    #[test]
    fn old_host_pid_names_are_never_taken_over_early() {
        let me = name("web-1", Some(BOOT_A), 50, "me");
        assert!(matches!(InstanceName::parse("web-1/999"), Holder::Legacy));
        assert!(!dead("web-1/999", &me));
        assert!(!dead("web-1/999/0123456789abcdef", &me));
        assert!(!dead("garbage", &me));
        assert!(!dead("web-1/../etc", &me));
        assert!(!dead("", &me));
        assert!(!dead(&me, "web-1/50"), "an old-format self judges nothing");
    }

    #[test]
    fn liveness_reads_this_namespaces_proc() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
