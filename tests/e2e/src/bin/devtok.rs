//! Development Authority for `make run`: prints a JWKS or mints an OpToken.
//!
//! ```text
//! devtok jwks  <authority.pem>
//! devtok optok <authority.pem> [--sub S] [--plan P] [--license L] [--scope "a b"]
//!              [--iss URL] [--aud A] [--ttl SECONDS] [--jkt THUMBPRINT] [--x5t THUMBPRINT]
//! ```

use registry_token_e2e::authority::{AuthorityKey, OpTokSpec};

fn usage() -> ! {
    eprintln!("usage: devtok jwks <authority.pem> | devtok optok <authority.pem> [--sub S] [--plan P] [--license L] [--scope \"a b\"] [--iss URL] [--aud A] [--ttl SECONDS] [--jkt T] [--x5t T]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(path)) = (args.first(), args.get(1)) else {
        usage()
    };
    let key = match AuthorityKey::from_file(std::path::Path::new(path)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("devtok: {e}");
            std::process::exit(1)
        }
    };
    match cmd.as_str() {
        "jwks" => println!("{}", key.jwks()),
        "optok" => {
            let mut spec = OpTokSpec::default();
            let mut rest = args.iter().skip(2);
            while let Some(flag) = rest.next() {
                let Some(value) = rest.next() else { usage() };
                match flag.as_str() {
                    "--sub" => spec.subject = value.clone(),
                    "--plan" => spec.plan = Some(value.clone()),
                    "--license" => spec.license = Some(value.clone()),
                    "--scope" => spec.scope = value.clone(),
                    "--iss" => spec.issuer = value.clone(),
                    "--aud" => spec.audience = value.clone(),
                    "--ttl" => spec.ttl = value.parse().unwrap_or_else(|_| usage()),
                    "--jkt" => spec.jkt = Some(value.clone()),
                    "--x5t" => spec.x5t_s256 = Some(value.clone()),
                    _ => usage(),
                }
            }
            println!("{}", spec.mint(&key));
        }
        _ => usage(),
    }
}
