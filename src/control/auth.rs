//! Bearer-token authentication of the REST API (docs/security.md).
//!
//! Every mutating call and the sensitive reads (Tracker, flow/group/meter dumps) need
//! `Authorization: Bearer <token>`; `/healthz`, `/readyz`, `/metrics`, `/v1/switches` and
//! `/v1/shards` stay open (probes and scrapers carry no secret; the switch and shard lists name
//! dpids and counters, nothing about pods). See [`is_public`].
//!
//! Where the token comes from, first match wins ([`HttpAuth::resolve`]):
//! 1. `SHARDFLOW_HTTP_TOKEN` in the environment;
//! 2. `[http] token_file` (read at start; missing, empty, or readable/writable by others is a
//!    configuration error, before any port is bound);
//! 3. else 32 random bytes (hex) generated at start into `http.token`, mode 0600, in the
//!    daemon's state directory ([`state_dir`]); its path is logged.
//!
//! `[http] auth = false` turns all of this off, explicitly, with a warning at start.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::HttpConfig;

/// The environment variable holding the token (wins over `[http] token_file`).
pub const TOKEN_ENV: &str = "SHARDFLOW_HTTP_TOKEN";
/// Name of the generated token file in the state directory.
pub const TOKEN_FILE_NAME: &str = "http.token";
/// Shortest token accepted from the environment or a file: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{source_name}: the token is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort { source_name: String },
    #[error("http.token_file: {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("cannot write the generated http token to {path}: {reason}")]
    Generate { path: PathBuf, reason: String },
}

/// The secret. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} bytes redacted>)", self.0.len())
    }
}

impl Token {
    /// A token from its text (surrounding whitespace, as a file's final newline, dropped).
    pub fn new(text: &str) -> Token {
        Token(Arc::from(text.trim().as_bytes()))
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

/// Compare two byte strings in time that depends only on their lengths, never on where they
/// first differ (an early-exit `==` would let a client find the token byte by byte by timing).
/// Hand-written because no constant-time crate (`subtle`) is in Cargo.lock; the length is not
/// secret (a generated token is always 64 hex characters). `black_box` keeps the compiler from
/// turning the fold back into an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// How the REST API is guarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `[http] auth = false`: every route open.
    Disabled,
    /// Non-public routes need `Authorization: Bearer <token>`.
    Bearer(Token),
}

/// Where a token came from (for the start-up log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File(PathBuf),
    Generated(PathBuf),
}

impl HttpAuth {
    /// Resolve the token from `env`, `[http] token_file`, or generate one (module docs).
    pub fn resolve(cfg: &HttpConfig, env: &[(String, String)]) -> Result<(HttpAuth, Option<TokenSource>), AuthError> {
        if !cfg.auth {
            return Ok((HttpAuth::Disabled, None));
        }
        if let Some(t) = env_token(env)? {
            return Ok((HttpAuth::Bearer(t), Some(TokenSource::Env)));
        }
        if let Some(path) = &cfg.token_file {
            return Ok((HttpAuth::Bearer(read_token_file(path)?), Some(TokenSource::File(path.clone()))));
        }
        let path = state_dir(env).join(TOKEN_FILE_NAME);
        let token = generate_token_file(&path)?;
        Ok((HttpAuth::Bearer(token), Some(TokenSource::Generated(path))))
    }

    /// What can be checked without writing anything: an env token's length, a token file's
    /// presence, content and mode. `shardflow run` calls it before any port is bound.
    pub fn check(cfg: &HttpConfig, env: &[(String, String)]) -> Result<(), AuthError> {
        if !cfg.auth || env_token(env)?.is_some() {
            return Ok(());
        }
        if let Some(path) = &cfg.token_file {
            read_token_file(path)?;
        }
        Ok(())
    }

    /// `None` when a request with this `Authorization` header may reach `path`, else why not.
    pub fn refuse(&self, path: &str, authorization: Option<&[u8]>) -> Option<&'static str> {
        let HttpAuth::Bearer(token) = self else { return None };
        if is_public(path) {
            return None;
        }
        let Some(value) = authorization else { return Some("missing Authorization: Bearer <token>") };
        // The scheme is case-insensitive (RFC 9110 11.1); one space, then the token.
        let presented = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return Some("Authorization is not a Bearer token"),
        };
        if token.matches(presented) {
            None
        } else {
            Some("wrong bearer token")
        }
    }
}

fn env_token(env: &[(String, String)]) -> Result<Option<Token>, AuthError> {
    match env.iter().rev().find(|(k, _)| k == TOKEN_ENV) {
        Some((_, v)) if v.trim().len() >= MIN_TOKEN_LEN => Ok(Some(Token::new(v))),
        Some(_) => Err(AuthError::TooShort { source_name: TOKEN_ENV.to_string() }),
        None => Ok(None),
    }
}

/// Routes open without a token: health, readiness, metrics, and the switch and shard lists.
pub fn is_public(path: &str) -> bool {
    let segs: Vec<&str> = path.split('?').next().unwrap_or("").split('/').filter(|s| !s.is_empty()).collect();
    matches!(segs.as_slice(), ["healthz"] | ["readyz"] | ["metrics"] | ["v1", "switches"] | ["v1", "shards"])
}

/// Read `[http] token_file`: it must exist, hold a token of at least [`MIN_TOKEN_LEN`]
/// characters, and be neither readable nor writable by others nor writable by its group.
pub fn read_token_file(path: &Path) -> Result<Token, AuthError> {
    let bad = |reason: String| AuthError::TokenFile { path: path.to_path_buf(), reason };
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o026 != 0 {
        return Err(bad(format!("mode {mode:04o} lets others read or write the token; chmod 600 (or 640) it")));
    }
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text).map_err(|e| bad(format!("not UTF-8 text: {e}")))?;
    let token = Token::new(&text);
    if token.0.is_empty() {
        return Err(bad("empty".to_string()));
    }
    if token.0.len() < MIN_TOKEN_LEN {
        return Err(bad(format!("the token is shorter than {MIN_TOKEN_LEN} characters")));
    }
    Ok(token)
}

/// The daemon's state directory, where a generated token goes: `$RUNTIME_DIRECTORY` (systemd's
/// `RuntimeDirectory=`), else `/run/shardflow` as root, else `$XDG_RUNTIME_DIR/shardflow`, else
/// `<tmp>/shardflow-<uid>`.
pub fn state_dir(env: &[(String, String)]) -> PathBuf {
    let var = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if let Some(d) = var("RUNTIME_DIRECTORY") {
        // systemd may list several, separated by ':'.
        return PathBuf::from(d.split(':').next().unwrap_or(&d));
    }
    let uid = effective_uid();
    if uid == Some(0) {
        return PathBuf::from("/run/shardflow");
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("shardflow");
    }
    std::env::temp_dir().join(format!("shardflow-{}", uid.unwrap_or(u32::MAX)))
}

/// The process's effective uid: `/proc/self` is owned by it (no libc dependency needed).
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// 32 random bytes from the kernel, hex: no random crate is a direct dependency.
fn random_hex() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Generate a token into `path` (mode 0600; its directory created 0700 when missing, and
/// refused when others may write to it), replacing the file of a previous run atomically.
fn generate_token_file(path: &Path) -> Result<Token, AuthError> {
    let bad = |reason: String| AuthError::Generate { path: path.to_path_buf(), reason };
    let dir = path.parent().ok_or_else(|| bad("no parent directory".to_string()))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() || meta.permissions().mode() & 0o022 != 0 || Some(meta.uid()) != effective_uid() {
        return Err(bad(format!("{} is not a directory of this user that only it may write to", dir.display())));
    }
    let text = random_hex().map_err(|e| bad(format!("cannot read /dev/urandom: {e}")))?;
    let tmp = dir.join(format!(".{TOKEN_FILE_NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(e.to_string()));
    }
    Ok(Token::new(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HttpConfig {
        HttpConfig::default()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardflow-auth-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn compare_is_exact() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abcdef", b"abcde"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn refuse_follows_routes_and_header() {
        let auth = HttpAuth::Bearer(Token::new("0123456789abcdef0123"));
        for open in ["/healthz", "/readyz", "/metrics", "/v1/switches", "/v1/shards/", "/metrics?x=1"] {
            assert_eq!(auth.refuse(open, None), None, "{open}");
        }
        for closed in
            ["/v1/tracker", "/v1/switches/1/flows", "/v1/invalidate?all=true", "/nope", "/v1/switches/1/groups"]
        {
            assert!(auth.refuse(closed, None).is_some(), "{closed}");
            assert!(auth.refuse(closed, Some(b"Bearer wrong-token-0000000")).is_some(), "{closed}");
            assert!(auth.refuse(closed, Some(b"Basic 0123456789abcdef0123")).is_some(), "{closed}");
            assert_eq!(auth.refuse(closed, Some(b"Bearer 0123456789abcdef0123")), None, "{closed}");
            assert_eq!(auth.refuse(closed, Some(b"bearer 0123456789abcdef0123 ")), None, "{closed}");
        }
        assert_eq!(HttpAuth::Disabled.refuse("/v1/tracker", None), None);
    }

    #[test]
    fn env_wins_then_file_then_generated() {
        let env = vec![(TOKEN_ENV.to_string(), "from-the-environment-1234".to_string())];
        let (a, s) = HttpAuth::resolve(&cfg(), &env).unwrap();
        assert_eq!(a, HttpAuth::Bearer(Token::new("from-the-environment-1234")));
        assert_eq!(s, Some(TokenSource::Env));
        let short = vec![(TOKEN_ENV.to_string(), "short".to_string())];
        assert!(matches!(HttpAuth::resolve(&cfg(), &short), Err(AuthError::TooShort { .. })));

        let d = tmpdir("file");
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("tok");
        std::fs::write(&f, "file-token-0123456789\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c = cfg();
        c.token_file = Some(f.clone());
        let (a, _) = HttpAuth::resolve(&c, &[]).unwrap();
        assert_eq!(a, HttpAuth::Bearer(Token::new("file-token-0123456789")));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HttpAuth::check(&c, &[]).unwrap_err().to_string();
        assert!(e.contains("0644") && e.contains("http.token_file"), "{e}");
        std::fs::write(&f, "\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(HttpAuth::check(&c, &[]).unwrap_err().to_string().contains("empty"));
        c.token_file = Some(d.join("missing"));
        assert!(HttpAuth::check(&c, &[]).is_err());

        let run = d.join("run");
        let env = vec![("RUNTIME_DIRECTORY".to_string(), run.display().to_string())];
        let (a, s) = HttpAuth::resolve(&cfg(), &env).unwrap();
        let path = run.join(TOKEN_FILE_NAME);
        assert_eq!(s, Some(TokenSource::Generated(path.clone())));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert_eq!(a, HttpAuth::Bearer(Token::new(&text)));
        // A second start writes a new token over the old one.
        let (b, _) = HttpAuth::resolve(&cfg(), &env).unwrap();
        assert_ne!(a, b);
        let mut off = cfg();
        off.auth = false;
        assert_eq!(HttpAuth::resolve(&off, &env).unwrap().0, HttpAuth::Disabled);
        let _ = std::fs::remove_dir_all(&d);
    }
}
