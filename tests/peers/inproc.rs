//! A user agent running inside the test process (the library, not the binary), registered to
//! the in-test registrar; its events arrive timestamped on a channel.

use super::registrar::Registrar;
use std::time::{Duration, Instant};
use wakeline::driver::MediaOptions;
use wakeline::signaling::message::Uri;
use wakeline::{Account, Config, Event, UserAgent};

/// The user agent, its runtime and its events.
pub struct InProcess {
    /// The runtime it runs on (one worker thread).
    pub rt: tokio::runtime::Runtime,
    /// The handle.
    pub ua: UserAgent,
    events: std::sync::mpsc::Receiver<(Instant, Event)>,
}

impl InProcess {
    /// Account `u@d` at `reg`, with a fixed instance-id.
    pub fn config(reg: &Registrar) -> Config {
        Config {
            account: Some(Account {
                registrar: Uri::parse(&reg.uri()).expect("uri"),
                user: "u".into(),
                domain: "d".into(),
                password: None,
                auth_user: None,
                proxy: None,
            }),
            local_user: "u".into(),
            instance_id: Some("urn:uuid:00000000-0000-4000-8000-000000000004".into()),
            ..Config::default()
        }
    }

    /// Starts the user agent and asks it to register.
    pub fn start(config: Config, media: MediaOptions) -> InProcess {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, events) = std::sync::mpsc::channel();
        let ua = rt.block_on(async {
            let (ua, mut ev) = UserAgent::builder(config)
                .media(media)
                .start()
                .await
                .expect("start");
            ua.register().await.expect("register");
            tokio::spawn(async move {
                while let Some(e) = ev.next().await {
                    if tx.send((Instant::now(), e)).is_err() {
                        break;
                    }
                }
            });
            ua
        });
        InProcess { rt, ua, events }
    }

    /// The next event matching `pred` within `limit`, with its arrival time.
    pub fn wait(&self, limit: Duration, pred: impl Fn(&Event) -> bool) -> Option<(Instant, Event)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok((at, e)) if pred(&e) => return Some((at, e)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let ua = self.ua.clone();
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), ua.shutdown()).await });
    }
}
