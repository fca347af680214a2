//! A real registry for tests: Debian's `docker-registry` (distribution v2) started on a free
//! 127.0.0.1 port with a temporary config, plain, with htpasswd basic auth, or with token auth
//! whose token endpoint this module serves itself (JWTs signed ES256 by a test key whose
//! self-signed certificate is the registry's `rootcertbundle`, passed in the `x5c` header, as
//! distribution's `registry/auth/token` verifies them). Plus a TCP proxy that cuts responses
//! mid-body, answers 503, ignores or corrupts ranged requests, to test retries and resumed
//! downloads. Everything is killed on drop.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rbuild::registry::{
    Credentials, CredentialsSource, PushOptions, Reference, RegistryClient, RegistryOptions,
    RetryPolicy,
};
use rbuild_layers::digest::Digest;
use rbuild_layers::image::{
    write_image, write_manifest, History, ImageConfig, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use rbuild_layers::oci_layout::OciLayout;
use rbuild_layers::store::layer::{LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::store::BlobStore;
use rbuild_layers::tar::entry::Entry;
use rbuild_test_support::{busybox_layout, host_architecture};

/// The registry binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The user the auth tests log in as.
pub const USER: &str = "tester";
/// Their password.
pub const PASSWORD: &str = "s3cret";

/// How the registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anonymous.
    Plain,
    /// htpasswd (HTTP basic).
    Basic,
    /// Bearer tokens from our token server.
    Token,
}

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The socket address.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    _token: Option<TokenServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Registry {
    /// Start a registry with `mode`; waits until it accepts connections.
    pub fn start(mode: AuthMode) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        let mut token = None;
        match mode {
            AuthMode::Plain => {}
            AuthMode::Basic => {
                let hash = bcrypt::hash_with_result(PASSWORD, 4)
                    .expect("bcrypt")
                    .format_for_version(bcrypt::Version::TwoY);
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).expect("write htpasswd");
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            AuthMode::Token => {
                let server = TokenServer::start(dir.path());
                auth = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.addr,
                    server.cert.display()
                );
                token = Some(server);
            }
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: rbuild-test-secret\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let addr: SocketAddr = host.parse().expect("socket address");
        let mut registry = Registry {
            child: Some(child),
            host,
            addr,
            dir,
            _token: token,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start: {}", self.log());
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kill the registry now (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

const SERVICE: &str = "rbuild-test-registry";
const ISSUER: &str = "rbuild-test-issuer";

/// The token endpoint: grants every requested action to `USER`/`PASSWORD`, nothing to others.
struct TokenServer {
    addr: SocketAddr,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    x5c: String,
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        let certified = rcgen::generate_simple_self_signed(vec!["rbuild-token-signer".to_string()])
            .expect("generate test certificate");
        let cert = dir.join("token-cert.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &certified.signing_key.serialize_der(),
            &rng,
        )
        .expect("load test key");
        let signer = Signer {
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(certified.cert.der()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().expect("token addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve_token(conn, &signer);
                }
            }
        });
        TokenServer {
            addr,
            cert,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 << 10 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(mut conn: TcpStream, signer: &Signer) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(head) = read_head(&mut conn) else {
        return;
    };
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(("scope", v)) = pair.split_once('=') {
            scopes.push(percent_decode(v));
        }
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let auth = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    let (status, body) = match auth {
        Some(a) if a == expected => {
            let token = sign_token(signer, &scopes);
            (
                "200 OK",
                format!(r#"{{"token":"{token}","expires_in":600}}"#),
            )
        }
        Some(_) => (
            "401 Unauthorized",
            r#"{"details":"wrong credentials"}"#.to_string(),
        ),
        // Anonymous: a valid token with no access, as Docker Hub gives for private repos.
        None => (
            "200 OK",
            format!(r#"{{"access_token":"{}"}}"#, sign_token(signer, &[])),
        ),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign_token(signer: &Signer, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [signer.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": format!("rbuild-{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = signer
        .key
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .expect("sign token");
    format!("{signing_input}.{}", b64url(signature.as_ref()))
}

/// A TCP forwarder that injects faults: it cuts server→client traffic of a connection once it
/// passed `after` bytes (`drops` times; `usize::MAX`: always), answers the first `unavailable`
/// blob GETs itself with `503 Service Unavailable`, and, when asked, removes the `Range` header
/// of requests (a registry without range support), answers them with a 416 itself, or flips one
/// body byte of every answer to a ranged request (a corrupted resume). It records the `Range` headers it saw and counts the
/// bytes it served.
pub struct FlakyProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    addr: SocketAddr,
    /// What happened so far.
    pub faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
}

/// What a [`FlakyProxy`] does to the traffic.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// How many connections to cut (`usize::MAX`: every one).
    pub drops: usize,
    /// Server→client bytes a connection passes before it is cut.
    pub after: usize,
    /// How many blob GETs to answer with a 503.
    pub unavailable: usize,
    /// Remove `Range` headers from requests.
    pub strip_range: bool,
    /// Flip the first body byte of answers to requests that carried `Range`.
    pub corrupt_ranged: bool,
    /// Answer requests that carry `Range` with `416 Range Not Satisfiable` (no registry asked).
    pub refuse_range: bool,
}

impl FaultPlan {
    /// Cut `drops` connections after `after` bytes, nothing else.
    pub fn cut(drops: usize, after: usize) -> FaultPlan {
        FaultPlan {
            drops,
            after,
            unavailable: 0,
            strip_range: false,
            corrupt_ranged: false,
            refuse_range: false,
        }
    }

    /// Answer the first `times` blob GETs with a 503, nothing else.
    pub fn unavailable(times: usize) -> FaultPlan {
        FaultPlan {
            unavailable: times,
            ..FaultPlan::cut(0, usize::MAX)
        }
    }
}

/// Fault budgets and counters of a [`FlakyProxy`].
pub struct Faults {
    drops: AtomicUsize,
    after: usize,
    unavailable: AtomicUsize,
    strip_range: bool,
    corrupt_ranged: bool,
    refuse_range: bool,
    /// Connections cut mid-response.
    pub cut: AtomicUsize,
    /// 503 answers given.
    pub answered_503: AtomicUsize,
    /// 416 answers given.
    pub answered_416: AtomicUsize,
    /// Server→client bytes passed on (heads and bodies of every answer).
    pub served: AtomicUsize,
    /// The `Range` header values of requests, in arrival order (also those stripped).
    pub ranges: Mutex<Vec<String>>,
    /// Answer bytes flipped.
    pub corrupted: AtomicUsize,
}

impl Faults {
    /// The `Range` headers seen so far.
    pub fn ranges(&self) -> Vec<String> {
        self.ranges.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
        .is_ok()
}

impl FlakyProxy {
    /// Forward to `target`, cutting responses after `after` bytes `drops` times.
    pub fn start(target: SocketAddr, drops: usize, after: usize) -> FlakyProxy {
        Self::with_plan(target, FaultPlan::cut(drops, after))
    }

    /// Forward to `target` with the faults of `plan`.
    pub fn with_plan(target: SocketAddr, plan: FaultPlan) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let faults = Arc::new(Faults {
            drops: AtomicUsize::new(plan.drops),
            after: plan.after,
            unavailable: AtomicUsize::new(plan.unavailable),
            strip_range: plan.strip_range,
            corrupt_ranged: plan.corrupt_ranged,
            refuse_range: plan.refuse_range,
            cut: AtomicUsize::new(0),
            answered_503: AtomicUsize::new(0),
            answered_416: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            ranges: Mutex::new(Vec::new()),
            corrupted: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (faults2, stop2) = (faults.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let faults = faults2.clone();
                thread::spawn(move || forward(client, server, faults));
            }
        });
        FlakyProxy {
            host: addr.to_string(),
            addr,
            faults,
            stop,
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The value of the `Range` header in a request head chunk, and the chunk without that line.
fn split_range(chunk: &[u8]) -> Option<(String, Vec<u8>)> {
    let head_end = chunk.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut rest = Vec::with_capacity(chunk.len());
    let mut value = None;
    let mut start = 0;
    while start < head_end + 2 {
        let len = chunk[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(chunk.len() - start, |p| p + 2);
        let line = &chunk[start..start + len];
        match String::from_utf8_lossy(line).split_once(':') {
            Some((name, v)) if name.eq_ignore_ascii_case("range") => {
                value = Some(v.trim().to_string());
            }
            _ => rest.extend_from_slice(line),
        }
        start += len;
    }
    rest.extend_from_slice(&chunk[start..]);
    value.map(|v| (v, rest))
}

/// Flips the first body byte of an answer, finding the end of its head across chunks.
#[derive(Default)]
struct Corrupter {
    /// The last bytes of the head seen so far (to find `\r\n\r\n` split across chunks).
    tail: Vec<u8>,
    /// The head is over: the next byte is the body's first.
    in_body: bool,
    done: bool,
}

impl Corrupter {
    /// Flip a byte of `chunk` if it holds the first body byte; true when it did.
    fn apply(&mut self, chunk: &mut [u8]) -> bool {
        if self.done {
            return false;
        }
        let body_start = if self.in_body {
            Some(0)
        } else {
            let mut seen = std::mem::take(&mut self.tail);
            let before = seen.len();
            seen.extend_from_slice(chunk);
            match seen.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(p) => {
                    self.in_body = true;
                    Some(p + 4 - before)
                }
                None => {
                    let keep = seen.len().saturating_sub(3);
                    self.tail = seen[keep..].to_vec();
                    None
                }
            }
        };
        match body_start {
            Some(i) if i < chunk.len() => {
                chunk[i] ^= 0xff;
                self.done = true;
                true
            }
            _ => false,
        }
    }
}

fn forward(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let (Ok(mut c_read), Ok(mut c_answer), Ok(mut s_write)) =
        (client.try_clone(), client.try_clone(), server.try_clone())
    else {
        return;
    };
    // Set (before the request goes on) when a request of this connection carried `Range` and
    // its answer is to be corrupted.
    let corrupt_next = Arc::new(AtomicBool::new(false));
    let up_corrupt = corrupt_next.clone();
    let up_faults = faults.clone();
    let upstream = thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = buf[..n].to_vec();
            let is_blob_get =
                chunk.starts_with(b"GET ") && chunk.windows(14).any(|w| w == b"/blobs/sha256:");
            if is_blob_get && take(&up_faults.unavailable) {
                let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}"#;
                let _ = write!(
                    c_answer,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                up_faults.answered_503.fetch_add(1, Ordering::SeqCst);
                let _ = c_answer.shutdown(Shutdown::Both);
                break;
            }
            if let Some((range, without)) = split_range(&chunk) {
                if let Ok(mut ranges) = up_faults.ranges.lock() {
                    ranges.push(range);
                }
                if up_faults.refuse_range {
                    let _ = write!(
                        c_answer,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    up_faults.answered_416.fetch_add(1, Ordering::SeqCst);
                    let _ = c_answer.shutdown(Shutdown::Both);
                    break;
                }
                if up_faults.strip_range {
                    chunk = without;
                } else if up_faults.corrupt_ranged {
                    up_corrupt.store(true, Ordering::SeqCst);
                }
            }
            if s_write.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Both);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut buf = [0u8; 16 << 10];
    let mut passed = 0usize;
    let mut corrupter = Corrupter::default();
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if corrupt_next.load(Ordering::SeqCst) && corrupter.apply(&mut buf[..n]) {
            faults.corrupted.fetch_add(1, Ordering::SeqCst);
        }
        if passed.saturating_add(n) > faults.after && take(&faults.drops) {
            let keep = faults.after.saturating_sub(passed);
            let _ = c_write.write_all(&buf[..keep]);
            faults.served.fetch_add(keep, Ordering::SeqCst);
            faults.cut.fetch_add(1, Ordering::SeqCst);
            let _ = c_write.shutdown(Shutdown::Both);
            let _ = s_read.shutdown(Shutdown::Both);
            break;
        }
        passed += n;
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        faults.served.fetch_add(n, Ordering::SeqCst);
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

/// Client options for tests: fast retries, given credentials for `host`.
pub fn client(creds: Option<(&str, &str, &str)>) -> RegistryClient {
    let credentials = match creds {
        None => CredentialsSource::Anonymous,
        Some((host, user, password)) => CredentialsSource::Static(BTreeMap::from([(
            host.to_string(),
            Credentials {
                username: user.to_string(),
                password: password.to_string(),
            },
        )])),
    };
    RegistryClient::new(RegistryOptions {
        credentials,
        retry: RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(20),
        ..RegistryOptions::default()
    })
}

/// Push the busybox test image to `registry` as `base:1`; returns its manifest digest.
pub fn seed(registry: &Registry, creds: Option<(&str, &str, &str)>) -> (LocalImages, Digest) {
    let images = LocalImages::new();
    let digest = push_as(registry, creds, &images, &images.manifest, "base:1");
    (images, digest)
}

/// Push the manifest or index `digest` of `images` to `registry` as `name`.
pub fn push_as(
    registry: &Registry,
    creds: Option<(&str, &str, &str)>,
    images: &LocalImages,
    digest: &Digest,
    name: &str,
) -> Digest {
    let target: Reference = format!("{}/{name}", registry.host)
        .parse()
        .expect("reference");
    client(creds)
        .push(images.store(), digest, &target, &PushOptions::default())
        .unwrap_or_else(|e| panic!("seed {target}: {e}\n{}", registry.log()))
        .digest
}

/// A local image source: the busybox test image, plus a two-platform index over it.
pub struct LocalImages {
    _dir: tempfile::TempDir,
    /// The layout holding the blobs.
    pub layout: OciLayout,
    /// The host-platform manifest digest.
    pub manifest: Digest,
    /// The other-platform manifest digest.
    pub other_manifest: Digest,
    /// The other platform's architecture.
    pub other_arch: &'static str,
    /// The index over both.
    pub index: Digest,
    /// The layer digests.
    pub layers: Vec<Digest>,
}

impl LocalImages {
    /// Build them in a temp dir.
    pub fn new() -> LocalImages {
        let dir = tempfile::tempdir().expect("tempdir");
        let busybox = busybox_layout(&dir.path().join("layout")).expect("busybox layout");
        let layout = OciLayout::open(&busybox.layout).expect("open layout");
        let store = layout.store();
        let image = &busybox.image;
        let other_arch = if host_architecture() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let mut config: serde_json::Value =
            serde_json::from_slice(&image.config_bytes).expect("config json");
        config["architecture"] = serde_json::Value::String(other_arch.to_string());
        let config_bytes = serde_json::to_vec(&config).expect("config bytes");
        let (config_digest, config_size) = store.put(&config_bytes).expect("put config");
        let layers = image.layers().expect("layers");
        let (other_manifest, other_size, _) = write_manifest(
            store,
            &config_digest,
            config_size,
            &layers,
            &BTreeMap::new(),
        )
        .expect("other manifest");
        let index = put_index(
            store,
            &[
                (
                    &image.manifest_digest,
                    image.manifest_size,
                    host_architecture(),
                ),
                (&other_manifest, other_size, other_arch),
            ],
        );
        LocalImages {
            layers: layers.iter().map(|l| l.digest.clone()).collect(),
            manifest: image.manifest_digest.clone(),
            layout,
            other_manifest,
            other_arch,
            index,
            _dir: dir,
        }
    }

    /// The blob store.
    pub fn store(&self) -> &BlobStore {
        self.layout.store()
    }

    /// A second index, written into the same store: the host child is the busybox image and
    /// the other platform's child has a layer of its own (see [`TwoPlatforms`]).
    pub fn two_platforms(&self) -> TwoPlatforms {
        let store = self.store();
        let arch = self.other_arch;
        let info = foreign_layer(store, arch);
        let digest = info.digest.clone();
        let mut config = ImageConfig::new("linux", arch);
        config.config.env = Some(vec!["PATH=/usr/bin:/bin".to_string()]);
        config.push_layer(
            info.diff_id.clone(),
            History {
                created_by: Some(format!("rbuild-test: the linux/{arch} child")),
                ..History::default()
            },
        );
        let other = write_image(store, &config, &[info], &BTreeMap::new()).expect("other image");
        let host_size = store.size(&self.manifest).expect("host manifest size");
        let index = put_index(
            store,
            &[
                (&self.manifest, host_size, host_architecture()),
                (&other.manifest_digest, other.manifest_size, arch),
            ],
        );
        TwoPlatforms {
            index,
            other_manifest: other.manifest_digest,
            other_layer: digest,
            other_platform: format!("linux/{arch}"),
        }
    }
}

/// A two-platform index whose children differ in their layers: the host's is busybox, the
/// other platform's holds only `/bin/sh` (an ELF header for that architecture, which this host
/// cannot execute) and `/etc/platform`.
pub struct TwoPlatforms {
    /// The index digest.
    pub index: Digest,
    /// The other platform's manifest.
    pub other_manifest: Digest,
    /// Its only layer (a gzipped tar).
    pub other_layer: Digest,
    /// `linux/ARCH` of the other platform.
    pub other_platform: String,
}

/// The ELF machine number of a Go architecture name (the two the tests use).
fn elf_machine(arch: &str) -> u16 {
    match arch {
        "arm64" => 183,
        _ => 62,
    }
}

/// The other platform's layer, gzipped as registries serve layers (skopeo would compress a
/// bare tar on copy): `bin/sh` (a 64-byte ELF header for `arch`) and `etc/platform`.
fn foreign_layer(store: &BlobStore, arch: &str) -> LayerInfo {
    let mut elf = vec![0u8; 64];
    elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    elf[16] = 2;
    elf[18..20].copy_from_slice(&elf_machine(arch).to_le_bytes());
    let platform = format!("linux/{arch}\n");
    let with_mode = |mut e: Entry, mode: u32| {
        e.mode = mode;
        e
    };
    let entries: [(Entry, &[u8]); 4] = [
        (with_mode(Entry::dir("bin"), 0o755), &[]),
        (with_mode(Entry::file("bin/sh", 64), 0o755), &elf),
        (with_mode(Entry::dir("etc"), 0o755), &[]),
        (
            with_mode(Entry::file("etc/platform", platform.len() as u64), 0o644),
            platform.as_bytes(),
        ),
    ];
    let mut writer = LayerWriter::new(store, LayerOptions::default()).expect("layer writer");
    for (entry, mut data) in entries {
        writer.append(&entry, &mut data).expect("layer entry");
    }
    writer.finish().expect("finish layer")
}

/// Store an OCI index over `(manifest, size, architecture)` children; returns its digest.
fn put_index(store: &BlobStore, children: &[(&Digest, u64, &str)]) -> Digest {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .map(|(digest, size, arch)| {
            serde_json::json!({
                "mediaType": MEDIA_TYPE_MANIFEST, "digest": digest.to_string(), "size": size,
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    });
    let (index, _) = store
        .put(&serde_json::to_vec(&index).expect("index bytes"))
        .expect("put index");
    index
}

/// Every file in `store`'s `blobs/sha256` is a complete blob named by its digest.
pub fn assert_no_stray_blobs(store: &BlobStore) {
    let dir = store.blobs_dir();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("read blobs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).expect("read blob");
        assert_eq!(
            Digest::of(&bytes).hex(),
            name,
            "stray or half-written file {name} in {}",
            dir.display()
        );
    }
}

/// Run skopeo with `args`; panics with its stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copy `reference` out of its registry with `skopeo copy docker://… oci:OCI:copied` (logging
/// in as `creds`, `user:password`, when given) and return the manifest digest skopeo wrote.
pub fn skopeo_copy_digest(oci: &Path, reference: &str, creds: Option<&str>) -> String {
    let src = format!("docker://{reference}");
    let dest = format!("oci:{}:copied", oci.display());
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--src-creds", c]);
    }
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(&args);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).expect("index.json"))
            .expect("index json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}
