//! Credentials: a cluster CA generated on first start, a serving certificate signed by it on
//! every start (so its names always match the listen address), an admin bearer token, and the
//! kubeconfig that ties them together. Everything lives in the data directory; private keys and
//! the token are written with mode 0600.

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The credentials a server runs with.
pub struct Credentials {
    /// The CA certificate (PEM) clients trust.
    pub ca_pem: String,
    /// The serving certificate chain (PEM).
    pub cert_pem: String,
    /// The serving private key (PEM).
    pub key_pem: String,
    /// The admin bearer token.
    pub token: String,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const TOKEN: &str = "token";

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Writes `contents` to `path`, readable only by the owner when `private`.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 });
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Loads the CA and token from `dir`, creating them on first start, and issues a serving
/// certificate valid for `listen` as well as localhost.
pub fn load_or_create(dir: &Path, listen: SocketAddr) -> Result<Credentials> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_pem, ca_key) = match (
        fs::read_to_string(dir.join(CA_CERT)),
        fs::read_to_string(dir.join(CA_KEY)),
    ) {
        (Ok(cert), Ok(key)) => (cert, KeyPair::from_pem(&key).context("reading ca.key")?),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_file(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
            write_file(&dir.join(CA_CERT), &cert.pem(), false)?;
            (cert.pem(), key)
        }
    };
    let token = match fs::read_to_string(dir.join(TOKEN)) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = random_token();
            write_file(&dir.join(TOKEN), &t, true)?;
            t
        }
    };

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.as_str().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&dir.join(SERVER_KEY), &key.serialize_pem(), true)?;
    write_file(&dir.join(SERVER_CERT), &cert.pem(), false)?;
    Ok(Credentials {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        token,
    })
}

/// The kubeconfig (YAML) for an admin user of the server at `server_url`, with `name` as the
/// cluster, user and context name.
pub fn kubeconfig(name: &str, server_url: &str, creds: &Credentials) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\ncurrent-context: {name}\npreferences: {{}}\n",
        token = creds.token
    )
}

/// Writes the admin kubeconfig into `dir/kubeconfig.yaml` (mode 0600: it holds the token).
pub fn write_kubeconfig(dir: &Path, contents: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("kubeconfig.yaml");
    write_file(&path, contents, true)?;
    Ok(path)
}

/// Builds the rustls server configuration for the credentials, offering HTTP/2 and HTTP/1.1.
pub fn server_tls_config(creds: &Credentials) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing serving certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).context("parsing serving key")?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_persist_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let first = load_or_create(dir.path(), addr).unwrap();
        let second = load_or_create(dir.path(), addr).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.token, second.token);
        for f in [CA_KEY, SERVER_KEY, TOKEN] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        server_tls_config(&second).unwrap();
        let kc = kubeconfig("skiff", "https://127.0.0.1:6443", &second);
        assert!(kc.contains(&second.token));
    }
}
