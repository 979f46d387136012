//! The `nomad-holepunch` binary: reads the command line, loads and checks
//! everything, then hands the server to Pingora. The logic lives in the
//! library (`src/lib.rs`).

use holepunch::build_info;
use holepunch::cli::{self, Command};
use holepunch::logging::{self, LogFormat};
use holepunch::startup::Startup;
use holepunch::vars::ConfigError;
use log::info;

fn main() {
    // Before anything else: a SIGHUP during the start must not end it.
    holepunch::files::watch::ignore_hangups();
    holepunch::allocator::tune();
    logging::init(LogFormat::from_env());
    let (mut opt, check) = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(opt)) => (opt, false),
        Ok(Command::Check(opt)) => (opt, true),
        Ok(Command::Version) => {
            println!("{}", build_info::version_line());
            return;
        }
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("nomad-holepunch: {e}");
            std::process::exit(2);
        }
    };

    let startup = Startup::load(&mut opt).unwrap_or_else(|errors| exit_with(&errors));
    if check {
        for line in startup.setting_lines() {
            println!("{line}");
        }
        println!("configuration OK");
        return;
    }

    info!(
        "nomad-holepunch {} starting (commit {}, pingora {})",
        build_info::VERSION,
        build_info::COMMIT,
        build_info::PINGORA
    );
    for line in startup.setting_lines() {
        info!("{line}");
    }
    let scheme = if startup.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listen = startup.config.listeners.listen;
    if !opt.upgrade {
        if let Err(e) = startup.check_listeners() {
            eprintln!("nomad-holepunch: {e}");
            std::process::exit(1);
        }
    }
    let server = startup.into_server(opt).unwrap_or_else(|e| exit_with(&[e]));
    info!("listening on {scheme}://{listen}");
    server.run_forever();
}

/// Prints one line per problem and exits 2, before anything listens.
fn exit_with(errors: &[ConfigError]) -> ! {
    for e in errors {
        eprintln!("nomad-holepunch: {e}");
    }
    eprintln!(
        "nomad-holepunch: not starting: {} configuration problem(s)",
        errors.len()
    );
    std::process::exit(2)
}
