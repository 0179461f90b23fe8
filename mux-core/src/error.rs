//! Error types of mux-core, in three layers (spec §8):
//!
//! - [`ErrorCode`]: the open 32-bit code space carried by RESET and GOAWAY frames;
//! - [`FrameError`]: a small `Copy` error for bytes that do not form a valid frame
//!   (syntax; always a connection error, spec §4.3);
//! - higher layers (the connection state machine) add errors for peer misbehaviour
//!   (semantics) on top of these.

use core::fmt;

/// A mux error code (spec §8): carried by RESET (stream level) and GOAWAY
/// (connection level) frames.
///
/// The code space is open: a receiver MUST treat an unknown code as
/// [`ErrorCode::INTERNAL_ERROR`] for its own decisions but keep and report the
/// raw value, so the type is a newtype over `u32` with associated constants
/// rather than an enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Graceful shutdown or a stream closed without error.
    pub const NO_ERROR: Self = Self(0x0);
    /// The peer broke a protocol rule not covered by a more specific code.
    pub const PROTOCOL_ERROR: Self = Self(0x1);
    /// The endpoint failed for a reason of its own.
    pub const INTERNAL_ERROR: Self = Self(0x2);
    /// The peer sent more than the flow-control window allowed, or overflowed a window.
    pub const FLOW_CONTROL_ERROR: Self = Self(0x3);
    /// A SETTINGS frame was not acknowledged in time.
    pub const SETTINGS_TIMEOUT: Self = Self(0x4);
    /// A frame arrived on a stream that was already half-closed in that direction.
    pub const STREAM_CLOSED: Self = Self(0x5);
    /// A frame had an invalid length, or exceeded the maximum frame size.
    pub const FRAME_SIZE_ERROR: Self = Self(0x6);
    /// The stream was not processed at all; the opener may retry it (on this or another connection).
    pub const REFUSED_STREAM: Self = Self(0x7);
    /// The stream is no longer needed.
    pub const CANCEL: Self = Self(0x8);
    /// The peer is generating excessive load (floods); back off.
    pub const ENHANCE_YOUR_CALM: Self = Self(0x9);
    /// A metadata block was larger than the receiver's MAX_METADATA_SIZE.
    pub const METADATA_TOO_LARGE: Self = Self(0xa);
    /// The peer's preface named a protocol version this endpoint does not speak.
    pub const UNSUPPORTED_VERSION: Self = Self(0xb);
    /// The connection was idle for longer than the endpoint's idle timeout.
    pub const IDLE_TIMEOUT: Self = Self(0xc);
    /// The transport lacks the security this endpoint requires: a plaintext
    /// connection to a port that requires TLS (spec §16.2).
    pub const INADEQUATE_SECURITY: Self = Self(0xd);

    /// The registered name of this code, or `None` for a code this version does not know.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NO_ERROR => "NO_ERROR",
            Self::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Self::INTERNAL_ERROR => "INTERNAL_ERROR",
            Self::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            Self::SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            Self::STREAM_CLOSED => "STREAM_CLOSED",
            Self::FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            Self::REFUSED_STREAM => "REFUSED_STREAM",
            Self::CANCEL => "CANCEL",
            Self::ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            Self::METADATA_TOO_LARGE => "METADATA_TOO_LARGE",
            Self::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
            Self::IDLE_TIMEOUT => "IDLE_TIMEOUT",
            Self::INADEQUATE_SECURITY => "INADEQUATE_SECURITY",
            _ => return None,
        })
    }

    /// Looks a code up by its registered name (as used in `spec/vectors`).
    pub fn from_name(name: &str) -> Option<Self> {
        (0..=0xd).map(Self).find(|code| code.name() == Some(name))
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Bytes that do not form a valid frame (spec §4.3).
///
/// Every variant is a connection error: the receiver sends GOAWAY with
/// [`FrameError::code`] and stops reading, because it can no longer trust where
/// the next frame starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared payload length exceeds the receiver's maximum frame size (spec §4.1).
    #[error("frame payload of {len} bytes exceeds the maximum frame size of {max}")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// The receiver's current maximum.
        max: u32,
    },
    /// A frame type with a fixed or minimum payload length had another length.
    #[error("{frame} frame has an invalid payload length of {len} bytes")]
    BadLength {
        /// Frame type name.
        frame: &'static str,
        /// Declared payload length.
        len: u32,
    },
    /// The reserved bit of a 31-bit field was set (spec §4.1).
    #[error("reserved bit set in a stream ID or window increment")]
    ReservedBit,
    /// A frame that belongs to a stream arrived on stream 0.
    #[error("{frame} frame on stream 0")]
    StreamIdZero {
        /// Frame type name.
        frame: &'static str,
    },
    /// A connection-level frame arrived with a non-zero stream ID.
    #[error("{frame} frame on stream {stream}, must be stream 0")]
    StreamIdNonZero {
        /// Frame type name.
        frame: &'static str,
        /// The stream ID that was given.
        stream: u32,
    },
    /// A WINDOW_UPDATE carried an increment of zero (spec §5.7).
    #[error("WINDOW_UPDATE with an increment of 0")]
    ZeroWindowIncrement,
    /// A metadata block did not parse as a sequence of entries (spec §5.2.1).
    #[error("malformed metadata block")]
    MalformedMetadata,
    /// A known setting carried a value outside its range (spec §5.4.1).
    #[error("setting {id:#x} has the out-of-range value {value}")]
    BadSetting {
        /// The setting identifier.
        id: u16,
        /// The value received.
        value: u32,
        /// The code the range rule names for this setting.
        code: ErrorCode,
    },
    /// A PUSH frame on an odd (client-initiated) stream ID (spec §5.8).
    #[error("PUSH frame promising the odd stream ID {stream}")]
    PushOnOddStream {
        /// The promised stream ID.
        stream: u32,
    },
}

impl FrameError {
    /// The error code that a GOAWAY frame carries for this error (spec §4.3).
    pub fn code(self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } | Self::BadLength { .. } => ErrorCode::FRAME_SIZE_ERROR,
            Self::BadSetting { code, .. } => code,
            Self::ReservedBit
            | Self::StreamIdZero { .. }
            | Self::StreamIdNonZero { .. }
            | Self::ZeroWindowIncrement
            | Self::MalformedMetadata
            | Self::PushOnOddStream { .. } => ErrorCode::PROTOCOL_ERROR,
        }
    }
}

/// The preface did not introduce a mux peer of a supported version (spec §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefaceError {
    /// The first bytes were not mux's magic: the peer speaks another protocol.
    #[error("the peer is not speaking mux (bad preface magic)")]
    BadMagic,
    /// The magic matched but the version is not one this endpoint speaks.
    #[error("the peer speaks mux version {0}, which is not supported")]
    UnsupportedVersion(u16),
}

impl PrefaceError {
    /// The error code of the GOAWAY that answers this error.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::BadMagic => ErrorCode::PROTOCOL_ERROR,
            Self::UnsupportedVersion(_) => ErrorCode::UNSUPPORTED_VERSION,
        }
    }
}

/// A frame that cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload does not fit the 24-bit length field (spec §4.1).
    #[error("frame payload of {0} bytes does not fit the 24-bit length field")]
    TooLong(usize),
}

/// Which endpoint ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// This endpoint: it detected an error (often the peer's) or chose to close.
    Local,
    /// The peer: it sent GOAWAY with an error, or closed the transport.
    Remote,
}

/// A flood budget the peer exhausted (spec §13.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    /// Streams opened then reset by the peer (rapid reset).
    PeerResets,
    /// Streams we had to refuse.
    RefusedStreams,
    /// PING frames.
    Pings,
    /// SETTINGS frames.
    Settings,
    /// Frames that carry nothing.
    EmptyFrames,
    /// Stream errors the peer caused.
    StreamErrors,
}

/// A timer that expired (spec §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The peer's preface and first SETTINGS did not arrive in time (spec §11.4.1).
    Handshake,
    /// Our SETTINGS were not acknowledged in time (spec §5.4.2.4).
    SettingsAck,
    /// A keepalive PING was not answered in time (spec §11.2.3).
    Keepalive,
    /// A graceful shutdown did not finish in time (spec §11.3.3).
    Drain,
}

/// Why a connection ended (spec §8.3).
///
/// Carries no `io::Error`: the core does no I/O. The runtime crates convert
/// it into `io::Error` where their APIs need one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer's preface was wrong (spec §3).
    #[error(transparent)]
    Preface(#[from] PrefaceError),
    /// The peer sent bytes that are not a valid frame (spec §4.3).
    #[error("malformed frame from the peer: {0}")]
    Frame(#[from] FrameError),
    /// The peer broke a rule of the protocol (semantics, not syntax).
    #[error("the peer broke spec §{section}: {0}", section = .0.section())]
    Protocol(#[from] PeerMisbehaved),
    /// The peer exhausted a flood budget (spec §13.2).
    #[error("the peer exceeded its budget of {0:?}")]
    Flood(Flood),
    /// The peer ended the connection with an error (GOAWAY, spec §11.3.2).
    #[error("the peer closed the connection with {code}")]
    Remote {
        /// The code of the peer's GOAWAY.
        code: ErrorCode,
    },
    /// This endpoint closed the connection with an error code.
    #[error("closed locally with {code}")]
    Local {
        /// The code of our GOAWAY.
        code: ErrorCode,
    },
    /// A timer expired.
    #[error("timed out: {0:?}")]
    Timeout(Timeout),
    /// The transport closed before the connection ended cleanly.
    #[error("the transport closed with streams still active")]
    TransportClosed,
}

impl ConnectionError {
    /// The code a GOAWAY carries (or carried) for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Preface(err) => err.code(),
            Self::Frame(err) => err.code(),
            Self::Protocol(misbehaved) => misbehaved.code(),
            Self::Remote { code } | Self::Local { code } => *code,
            Self::Flood(_) => ErrorCode::ENHANCE_YOUR_CALM,
            // Spec §11.4.1: the peer's preface came but its SETTINGS did not.
            Self::Timeout(Timeout::SettingsAck | Timeout::Handshake) => ErrorCode::SETTINGS_TIMEOUT,
            // Spec §11.2.3, §11.3.3: an immediate end, not a graceful
            // shutdown, which NO_ERROR would promise (§11.3.1).
            Self::Timeout(Timeout::Drain | Timeout::Keepalive) => ErrorCode::CANCEL,
            Self::TransportClosed => ErrorCode::NO_ERROR,
        }
    }

    /// Who ended the connection.
    pub fn initiator(&self) -> Initiator {
        match self {
            Self::Remote { .. } | Self::TransportClosed => Initiator::Remote,
            _ => Initiator::Local,
        }
    }
}

/// A rule of the protocol the peer broke: semantics, where [`FrameError`] is
/// syntax (spec §8.3). Each variant knows the spec section that states the
/// rule and the code its GOAWAY carries, so tests match on what happened and
/// the spec-to-code map is one `grep` away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The first frame after the preface was not SETTINGS (spec §3.6).
    #[error("the first frame after the preface must be SETTINGS")]
    FirstFrameNotSettings,
    /// A new stream ID was not greater than every earlier one (spec §6.1.2).
    #[error("a new stream ID is not greater than the last one")]
    StreamIdNotIncreasing,
    /// A client received OPEN (spec §5.2.3).
    #[error("OPEN received by a client")]
    OpenReceivedByClient,
    /// OPEN named an even (server) stream ID (spec §5.2.3).
    #[error("OPEN on an even stream ID")]
    OpenOnServerStreamId,
    /// A server received PUSH (spec §5.8.3).
    #[error("PUSH received by a server")]
    PushReceivedByServer,
    /// PUSH was tied to an even or idle stream (spec §10.3).
    #[error("PUSH tied to an even or idle stream")]
    PushTiedToInvalidStream,
    /// DATA arrived on an idle stream (spec §6.3).
    #[error("DATA on an idle stream")]
    DataOnIdleStream,
    /// RESET arrived on an idle stream (spec §6.3).
    #[error("RESET on an idle stream")]
    ResetOnIdleStream,
    /// WINDOW_UPDATE arrived on an idle stream (spec §6.3).
    #[error("WINDOW_UPDATE on an idle stream")]
    WindowUpdateOnIdleStream,
    /// A SETTINGS ACK arrived with no SETTINGS of ours outstanding (spec §5.4.2.1).
    #[error("SETTINGS ACK without a SETTINGS to acknowledge")]
    UnexpectedSettingsAck,
    /// A second GOAWAY raised the Last Stream ID of the first (spec §11.3.1).
    #[error("GOAWAY raised its Last Stream ID")]
    GoAwayRaisedLastStream,
    /// The peer opened a stream (OPEN or PUSH) after it sent GOAWAY (spec §11.3.1).
    #[error("a stream opened after the peer's own GOAWAY")]
    StreamOpenedAfterGoAway,
    /// DATA exceeded the connection receive window (spec §9.4.1).
    #[error("DATA beyond the connection window")]
    ConnectionWindowExceeded,
    /// WINDOW_UPDATE overflowed the connection send window (spec §9.5.1).
    #[error("WINDOW_UPDATE overflowed the connection window")]
    ConnectionWindowOverflow,
}

impl PeerMisbehaved {
    /// The section of `spec/mux-v1.md` that states the rule.
    pub fn section(self) -> &'static str {
        match self {
            Self::FirstFrameNotSettings => "3.6",
            Self::StreamIdNotIncreasing => "6.1.2",
            Self::OpenReceivedByClient | Self::OpenOnServerStreamId => "5.2.3",
            Self::PushReceivedByServer => "5.8.3",
            Self::PushTiedToInvalidStream => "10.3",
            Self::DataOnIdleStream | Self::ResetOnIdleStream | Self::WindowUpdateOnIdleStream => {
                "6.3"
            }
            Self::UnexpectedSettingsAck => "5.4.2.1",
            Self::GoAwayRaisedLastStream | Self::StreamOpenedAfterGoAway => "11.3.1",
            Self::ConnectionWindowExceeded => "9.4.1",
            Self::ConnectionWindowOverflow => "9.5.1",
        }
    }

    /// The code the GOAWAY carries.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::ConnectionWindowExceeded | Self::ConnectionWindowOverflow => {
                ErrorCode::FLOW_CONTROL_ERROR
            }
            _ => ErrorCode::PROTOCOL_ERROR,
        }
    }
}

/// Why a stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Clients open streams with OPEN, servers with PUSH (spec §5.2.3, §5.8.3).
    #[error("this side cannot open streams of that kind")]
    WrongSide,
    /// GOAWAY was sent or received: no new streams (spec §11.3).
    #[error("the connection is going away")]
    GoingAway,
    /// The peer's MAX_CONCURRENT_STREAMS is reached; retry when a stream ends (spec §6.4).
    #[error("the peer's limit of {0} concurrent streams is reached")]
    ConcurrencyLimit(u32),
    /// The metadata exceeds the peer's MAX_METADATA_SIZE (spec §5.2.2).
    #[error("metadata of {len} bytes exceeds the peer's limit of {max}")]
    MetadataTooLarge {
        /// Encoded metadata length.
        len: usize,
        /// The peer's limit.
        max: usize,
    },
    /// All stream IDs of this side are used (spec §6.1.4).
    #[error("stream IDs are exhausted; open a new connection")]
    IdsExhausted,
    /// A tied push names a stream that is not an open client stream (spec §10.3).
    #[error("the associated stream is not an open client stream")]
    BadAssociatedStream,
    /// The connection has ended.
    #[error("the connection is closed")]
    Closed,
    /// A server cannot open streams before the client's preface arrived (spec §3.3).
    #[error("the handshake has not started yet")]
    NotReady,
}

/// Why data could not be written on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The stream does not exist (never opened, reset, or finished).
    #[error("no such stream")]
    UnknownStream,
    /// This endpoint already ended its direction, or never sends on the stream.
    #[error("the stream is not writable")]
    NotWritable,
    /// The connection has ended.
    #[error("the connection is closed")]
    Closed,
}

/// Why a stream could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream does not exist (never opened, reset, or fully read).
    #[error("no such stream")]
    UnknownStream,
    /// This endpoint never receives on the stream (a push it sent).
    #[error("the stream is not readable")]
    NotReadable,
}
