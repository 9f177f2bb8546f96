//! A real OpenLDAP `slapd` for the tests: its own configuration, database and port in a
//! temporary folder, loaded with fixtures by `slapadd`, started and stopped by the test
//! (never the system service). Needs the Debian packages `slapd` and `ldap-utils`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::callback::TestPki;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
pub const BASE_DN: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=cas,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "cas-service-secret";
/// jdoe's password; `locked` has the same one.
pub const LDAP_PASSWORD: &str = "ldap-pass";

const FIXTURES: &str = "dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=policies,dc=example,dc=org
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,dc=example,dc=org
objectClass: pwdPolicy
objectClass: person
cn: default
sn: policy
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 0
pwdMustChange: TRUE

dn: cn=cas,ou=services,dc=example,dc=org
objectClass: person
cn: cas
sn: service
userPassword: cas-service-secret

dn: uid=jdoe,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: jdoe
cn: John Doe
sn: Doe
mail: jdoe@example.org
memberOf: cn=staff,ou=groups,dc=example,dc=org
memberOf: cn=faculty,ou=groups,dc=example,dc=org
userPassword: ldap-pass

dn: uid=locked,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: locked
cn: Locked User
sn: User
userPassword: ldap-pass
pwdAccountLockedTime: 000001010000Z

dn: uid=nomail,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: nomail
cn: No Mail
sn: Mail
userPassword: ldap-pass

dn: uid=reset,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: reset
cn: Reset User
sn: User
userPassword: ldap-pass
pwdReset: TRUE
";

pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    /// The CA of the server certificate, when StartTLS is on.
    pub ca_der: Option<Vec<u8>>,
}

impl Slapd {
    /// Starts a directory on a free loopback port; with `pki`, StartTLS is offered with a
    /// certificate for `localhost` and 127.0.0.1.
    pub fn start(pki: Option<&TestPki>) -> Self {
        assert!(
            Path::new(SLAPD).exists(),
            "{SLAPD} not found: install the Debian packages slapd and ldap-utils (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("db")).unwrap();
        let mut tls = String::new();
        let mut ca_der = None;
        if let Some(pki) = pki {
            let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
            std::fs::write(root.join("cert.pem"), &leaf.cert_pem).unwrap();
            std::fs::write(root.join("key.pem"), &leaf.key_pem).unwrap();
            tls = format!(
                "TLSCertificateFile {0}/cert.pem\nTLSCertificateKeyFile {0}/key.pem\n",
                root.display()
            );
            ca_der = Some(pki.ca_der());
        }
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
moduleload memberof
pidfile {root}/slapd.pid
{tls}database mdb
suffix \"{BASE_DN}\"
rootdn \"cn=admin,{BASE_DN}\"
rootpw admin-secret
directory {root}/db
overlay memberof
overlay ppolicy
ppolicy_default \"cn=default,ou=policies,{BASE_DN}\"
ppolicy_use_lockout
access to attrs=userPassword by self auth by anonymous auth by * none
access to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none
",
            root = root.display()
        );
        std::fs::write(root.join("slapd.conf"), conf).unwrap();
        std::fs::write(root.join("data.ldif"), FIXTURES).unwrap();
        let loaded = Command::new(SLAPADD)
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("data.ldif"))
            .output()
            .expect("slapadd runs");
        assert!(
            loaded.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut slapd = Self {
            dir,
            port,
            child: None,
            ca_der,
        };
        slapd.run();
        slapd
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slapd.conf")
    }

    fn run(&mut self) {
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.conf())
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .arg("-d")
            .arg("0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("slapd did not listen on port {} within 5 s", self.port);
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the directory: connections are accepted by
    /// the kernel but nothing is answered, as with an overloaded server.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the directory (the test's "outage").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process would not act on SIGTERM.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..200 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
