//! An HTTPS endpoint that plays a CAS client's proxy callback (`pgtUrl`), with
//! certificates from a CA generated for the test, and records every request it gets.
//!
//! Paths: `/cb/ok` answers 200, `/cb/missing` 404, `/cb/error` 500, `/cb/slow` waits
//! longer than any test timeout, `/cb/redirect` answers 302 to `/cb/ok`; anything else 200.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject as _;

/// A certificate authority that exists only for one test.
pub struct TestPki {
    ca_der: Vec<u8>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cas-server test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_der: cert.der().to_vec(),
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, for the server's trust store.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca_der.clone()
    }

    /// The CA certificate, PEM, for files such as `ca_file`.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// A server certificate for `names`, signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A self-signed certificate no one trusts.
pub fn untrusted_leaf(names: &[&str]) -> Leaf {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    Leaf {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    }
}

/// One request the callback endpoint received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Hit {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A running HTTPS callback endpoint on 127.0.0.1; stops when dropped.
pub struct CallbackSink {
    pub port: u16,
    hits: Hits,
    handle: axum_server::Handle<std::net::SocketAddr>,
}

impl CallbackSink {
    pub async fn start(leaf: &Leaf) -> Self {
        let certs: Vec<_> =
            rustls_pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let hits: Hits = Arc::default();
        let app = Router::new().fallback(record).with_state(hits.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(tls)))
                .unwrap()
                .handle(handle.clone());
        tokio::spawn(server.serve(app.into_make_service()));
        Self { port, hits, handle }
    }

    /// `https://localhost:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// `https://127.0.0.1:PORT{path}`: the same endpoint under a name its certificate lacks.
    pub fn ip_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The PGT delivered to `path` (asserts exactly one delivery there).
    pub fn pgt_delivered_to(&self, path: &str) -> (String, String) {
        let hits: Vec<Hit> = self.hits().into_iter().filter(|h| h.path == path).collect();
        assert_eq!(hits.len(), 1, "one callback to {path}: {hits:?}");
        (
            hits[0].param("pgtIou").expect("pgtIou").to_owned(),
            hits[0].param("pgtId").expect("pgtId").to_owned(),
        )
    }
}

impl Drop for CallbackSink {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn record(State(hits): State<Hits>, OriginalUri(uri): OriginalUri) -> Response {
    let query = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let path = uri.path().to_owned();
    hits.lock().unwrap().push(Hit {
        path: path.clone(),
        query,
    });
    match path.as_str() {
        "/cb/missing" => StatusCode::NOT_FOUND.into_response(),
        "/cb/error" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/cb/redirect" => (StatusCode::FOUND, [(LOCATION, "/cb/ok")]).into_response(),
        "/cb/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        _ => (StatusCode::OK, "ok").into_response(),
    }
}
