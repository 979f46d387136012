//! The command line: Pingora's own flags (`-u`, `-d`, `-t`, `-c FILE`) plus
//! `--check`, `--version` and `--help`. Everything else is configured with
//! environment variables. Pure: [`parse`] takes the arguments as a list.

use pingora::server::configuration::Opt;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the proxy (with Pingora's flags).
    Run(Opt),
    /// Validate the environment and configuration, print the effective
    /// settings, exit 0 (or 2 with the problems).
    Check(Opt),
    Version,
    Help,
}

pub const USAGE: &str = concat!(
    "\
Usage: nomad-holepunch [OPTIONS]

Exposes an allowlisted part of the Nomad Task API socket on TCP, with the
task's Workload Identity token. Configured with environment variables
(",
    crate::var_name!(BIND),
    ", ",
    crate::var_name!(PORT),
    ", HOLEPUNCH_ALLOW_*, ...; see the README).

Options:
  -c, --conf FILE   Pingora server settings (YAML): threads, grace period,
                    upgrade socket, pid file
  -u, --upgrade     take over the listening socket of a running instance
                    (then send that instance SIGQUIT)
  -d, --daemon      run in the background
  -t, --test        check that the server can start, then exit
      --check       validate the environment and configuration, print the
                    effective settings (token redacted), exit 0 or 2
  -V, --version     print the version, the git commit and the Pingora version
  -h, --help        print this help

Signals: SIGTERM drains requests in flight and exits 0; SIGQUIT hands the
listening socket to a new instance started with -u; SIGHUP re-reads every
watched file (token, client tokens, certificates); SIGINT exits at once."
);

/// The program's own name. A first argument that names it (`nomad-holepunch`,
/// `/opt/nomad-holepunch`) is skipped: Nomad's docker and podman drivers
/// pass a job's `command` to the image's entrypoint as its first argument
/// (hashicorp/nomad `drivers/docker/driver.go`, `createContainerConfig`:
/// `config.Cmd = [command, args...]`, the image's `ENTRYPOINT` kept), so a
/// job written for the Go original's image, whose `command` is
/// `/opt/nomad-holepunch`, runs `nomad-holepunch /opt/nomad-holepunch`.
const PROGRAM: &str = "nomad-holepunch";

/// Whether `arg` names this program, as a job's `command` would.
fn names_the_program(arg: &str) -> bool {
    arg.rsplit('/').next() == Some(PROGRAM)
}

/// Parses the arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut opt = Opt::default();
    let mut check = false;
    let mut args = args.into_iter().peekable();
    args.next_if(|first| names_the_program(first));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--check" => check = true,
            "-u" | "--upgrade" => opt.upgrade = true,
            "-d" | "--daemon" => opt.daemon = true,
            "-t" | "--test" => opt.test = true,
            "-c" | "--conf" => {
                let file = args
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file: {arg} conf/holepunch.yaml"))?;
                opt.conf = Some(file);
            }
            _ => {
                if let Some(file) = arg.strip_prefix("--conf=") {
                    opt.conf = Some(file.to_string());
                } else {
                    return Err(format!("unknown argument {arg:?}; see --help"));
                }
            }
        }
    }
    Ok(if check {
        Command::Check(opt)
    } else {
        Command::Run(opt)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn pingora_flags_and_ours() {
        let Ok(Command::Run(opt)) = args(&[]) else {
            panic!("no arguments runs")
        };
        assert!(!opt.upgrade && !opt.daemon && !opt.test && opt.conf.is_none());
        let Ok(Command::Run(opt)) = args(&["-u", "-c", "conf/holepunch.yaml", "-d"]) else {
            panic!("run")
        };
        assert!(opt.upgrade && opt.daemon);
        assert_eq!(opt.conf.as_deref(), Some("conf/holepunch.yaml"));
        let Ok(Command::Run(opt)) = args(&["--upgrade", "--conf=x.yaml", "--test"]) else {
            panic!("run")
        };
        assert!(opt.upgrade && opt.test);
        assert_eq!(opt.conf.as_deref(), Some("x.yaml"));
        let Ok(Command::Check(opt)) = args(&["--check", "-c", "y.yaml"]) else {
            panic!("check")
        };
        assert_eq!(opt.conf.as_deref(), Some("y.yaml"));
        assert!(matches!(args(&["--version"]), Ok(Command::Version)));
        assert!(matches!(args(&["-V"]), Ok(Command::Version)));
        assert!(matches!(args(&["--check", "-h"]), Ok(Command::Help)));
    }

    /// A job written for the Go original's image sets `command =
    /// "/opt/nomad-holepunch"`; the docker driver passes it to this image's
    /// entrypoint as the first argument. Only the first argument, and only
    /// this program's name.
    #[test]
    fn a_first_argument_naming_the_program_is_skipped() {
        for first in [
            "/opt/nomad-holepunch",
            "nomad-holepunch",
            "/usr/local/bin/nomad-holepunch",
        ] {
            let Ok(Command::Run(opt)) = args(&[first]) else {
                panic!("{first} alone runs")
            };
            assert!(!opt.upgrade);
            let Ok(Command::Check(opt)) = args(&[first, "--check", "-c", "x.yaml"]) else {
                panic!("{first} --check checks")
            };
            assert_eq!(opt.conf.as_deref(), Some("x.yaml"));
        }
        for other in ["/opt/nomad-holepunch2", "/opt/other", "nomad-holepunch/"] {
            assert!(args(&[other]).is_err(), "{other}");
        }
        assert!(args(&["-u", "/opt/nomad-holepunch"]).is_err(), "only first");
        assert!(
            args(&["nomad-holepunch", "nomad-holepunch"]).is_err(),
            "once"
        );
    }

    #[test]
    fn mistakes_say_what_to_do() {
        assert_eq!(
            args(&["-c"]).unwrap_err(),
            "-c needs a file: -c conf/holepunch.yaml"
        );
        assert_eq!(
            args(&["--bind", "0.0.0.0"]).unwrap_err(),
            "unknown argument \"--bind\"; see --help"
        );
    }
}
