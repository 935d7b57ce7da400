//! Presence states as readers see them, and the two sources that set them besides heartbeats:
//! the status an app reports with its heartbeats, and a user's manual override.
//!
//! Precedence: manual override > app-reported status > inferred (`online` while heartbeats
//! arrive). `invisible` is an override that reads as `offline` to everyone.

/// What `STATUS` says and what events carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Offline,
    Online,
    Away,
    Busy,
    Dnd,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Offline => "offline",
            State::Online => "online",
            State::Away => "away",
            State::Busy => "busy",
            State::Dnd => "dnd",
        }
    }

    pub fn is_online(self) -> bool {
        self != State::Offline
    }
}

/// What an app may report with `HEARTBEAT ... STATUS`, or store as a drop-in key's value
/// (`SET user:42:presence away EX 30`). Stored in two bits of the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AppStatus {
    #[default]
    Online,
    Away,
    Busy,
    Dnd,
}

impl AppStatus {
    pub fn parse(word: &[u8]) -> Option<AppStatus> {
        [
            (&b"online"[..], AppStatus::Online),
            (b"away", AppStatus::Away),
            (b"busy", AppStatus::Busy),
            (b"dnd", AppStatus::Dnd),
        ]
        .into_iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|(_, s)| s)
    }

    pub fn bits(self) -> u64 {
        match self {
            AppStatus::Online => 0,
            AppStatus::Away => 1,
            AppStatus::Busy => 2,
            AppStatus::Dnd => 3,
        }
    }

    /// The exact (lower-case) word a drop-in value must be to live in the slot; any other
    /// spelling is kept byte for byte as a custom value.
    pub fn from_exact_word(word: &[u8]) -> Option<AppStatus> {
        match word {
            b"online" => Some(AppStatus::Online),
            b"away" => Some(AppStatus::Away),
            b"busy" => Some(AppStatus::Busy),
            b"dnd" => Some(AppStatus::Dnd),
            _ => None,
        }
    }

    pub fn from_bits(bits: u64) -> AppStatus {
        match bits {
            1 => AppStatus::Away,
            2 => AppStatus::Busy,
            3 => AppStatus::Dnd,
            _ => AppStatus::Online,
        }
    }

    pub fn state(self) -> State {
        match self {
            AppStatus::Online => State::Online,
            AppStatus::Away => State::Away,
            AppStatus::Busy => State::Busy,
            AppStatus::Dnd => State::Dnd,
        }
    }
}

/// What `SETSTATUS` may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualStatus {
    Away,
    Busy,
    Dnd,
    Invisible,
}

impl ManualStatus {
    /// `Some(None)` is `none`: clear the override. `None`: not a manual status word.
    pub fn parse(word: &[u8]) -> Option<Option<ManualStatus>> {
        let known = [
            (&b"away"[..], Some(ManualStatus::Away)),
            (b"busy", Some(ManualStatus::Busy)),
            (b"dnd", Some(ManualStatus::Dnd)),
            (b"invisible", Some(ManualStatus::Invisible)),
            (b"none", None),
        ];
        known
            .into_iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map(|(_, s)| s)
    }

    /// The state an online user shows with this override.
    pub fn state(self) -> State {
        match self {
            ManualStatus::Away => State::Away,
            ManualStatus::Busy => State::Busy,
            ManualStatus::Dnd => State::Dnd,
            ManualStatus::Invisible => State::Offline,
        }
    }
}
