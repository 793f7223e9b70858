//! Decode errors, each carrying the OpenFlow error (type, code) that Open vSwitch would answer
//! the same input with, so that a session can reply OFPT_ERROR and keep the connection.

use std::fmt;

/// An OpenFlow error type and code (OF1.3 numbering), as carried by OFPT_ERROR.
///
/// Experimenter errors (type 0xffff, e.g. the ONF bundle errors OVS uses in OF1.3) carry the
/// experimenter id as well; it is 0 for standard errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    pub etype: u16,
    pub code: u16,
    pub experimenter: u32,
}

macro_rules! error_codes {
    ($( $konst:ident = ($t:expr, $c:expr, $exp:expr, $name:literal); )*) => {
        impl ErrorCode {
            $( pub const $konst: ErrorCode = ErrorCode { etype: $t, code: $c, experimenter: $exp }; )*

            /// The name OVS prints for this error (`OFPBRC_BAD_LEN`), if it is one we know.
            pub fn name(&self) -> Option<&'static str> {
                $( if *self == ErrorCode::$konst { return Some($name); } )*
                None
            }

            /// Every error code with a name, for tests and lookups.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$konst, )* ];
        }
    };
}

/// The ONF experimenter id, used by OF1.3 bundles (and their errors).
pub const ONF_EXPERIMENTER: u32 = 0x4f4e_4600;

error_codes! {
    HELLO_FAILED_INCOMPATIBLE = (0, 0, 0, "OFPHFC_INCOMPATIBLE");
    HELLO_FAILED_EPERM = (0, 1, 0, "OFPHFC_EPERM");

    BAD_REQUEST_BAD_VERSION = (1, 0, 0, "OFPBRC_BAD_VERSION");
    BAD_REQUEST_BAD_TYPE = (1, 1, 0, "OFPBRC_BAD_TYPE");
    BAD_REQUEST_BAD_MULTIPART = (1, 2, 0, "OFPBRC_BAD_STAT");
    BAD_REQUEST_BAD_EXPERIMENTER = (1, 3, 0, "OFPBRC_BAD_VENDOR");
    BAD_REQUEST_BAD_EXP_TYPE = (1, 4, 0, "OFPBRC_BAD_SUBTYPE");
    BAD_REQUEST_EPERM = (1, 5, 0, "OFPBRC_EPERM");
    BAD_REQUEST_BAD_LEN = (1, 6, 0, "OFPBRC_BAD_LEN");
    BAD_REQUEST_BUFFER_EMPTY = (1, 7, 0, "OFPBRC_BUFFER_EMPTY");
    BAD_REQUEST_BUFFER_UNKNOWN = (1, 8, 0, "OFPBRC_BUFFER_UNKNOWN");
    BAD_REQUEST_BAD_TABLE_ID = (1, 9, 0, "OFPBRC_BAD_TABLE_ID");
    BAD_REQUEST_IS_SLAVE = (1, 10, 0, "OFPBRC_IS_SLAVE");
    BAD_REQUEST_BAD_PORT = (1, 11, 0, "OFPBRC_BAD_PORT");
    BAD_REQUEST_BAD_PACKET = (1, 12, 0, "OFPBRC_BAD_PACKET");
    BAD_REQUEST_MULTIPART_BUFFER_OVERFLOW = (1, 13, 0, "OFPBRC_MULTIPART_BUFFER_OVERFLOW");

    BAD_ACTION_BAD_TYPE = (2, 0, 0, "OFPBAC_BAD_TYPE");
    BAD_ACTION_BAD_LEN = (2, 1, 0, "OFPBAC_BAD_LEN");
    BAD_ACTION_BAD_EXPERIMENTER = (2, 2, 0, "OFPBAC_BAD_VENDOR");
    BAD_ACTION_BAD_EXP_TYPE = (2, 3, 0, "OFPBAC_BAD_VENDOR_TYPE");
    BAD_ACTION_BAD_OUT_PORT = (2, 4, 0, "OFPBAC_BAD_OUT_PORT");
    BAD_ACTION_BAD_ARGUMENT = (2, 5, 0, "OFPBAC_BAD_ARGUMENT");
    BAD_ACTION_EPERM = (2, 6, 0, "OFPBAC_EPERM");
    BAD_ACTION_TOO_MANY = (2, 7, 0, "OFPBAC_TOO_MANY");
    BAD_ACTION_BAD_QUEUE = (2, 8, 0, "OFPBAC_BAD_QUEUE");
    BAD_ACTION_BAD_OUT_GROUP = (2, 9, 0, "OFPBAC_BAD_OUT_GROUP");
    BAD_ACTION_MATCH_INCONSISTENT = (2, 10, 0, "OFPBAC_MATCH_INCONSISTENT");
    BAD_ACTION_UNSUPPORTED_ORDER = (2, 11, 0, "OFPBAC_UNSUPPORTED_ORDER");
    BAD_ACTION_BAD_TAG = (2, 12, 0, "OFPBAC_BAD_TAG");
    BAD_ACTION_BAD_SET_TYPE = (2, 13, 0, "OFPBAC_BAD_SET_TYPE");
    BAD_ACTION_BAD_SET_LEN = (2, 14, 0, "OFPBAC_BAD_SET_LEN");
    BAD_ACTION_BAD_SET_ARGUMENT = (2, 15, 0, "OFPBAC_BAD_SET_ARGUMENT");

    BAD_INSTRUCTION_UNKNOWN_INST = (3, 0, 0, "OFPBIC_UNKNOWN_INST");
    BAD_INSTRUCTION_UNSUP_INST = (3, 1, 0, "OFPBIC_UNSUP_INST");
    BAD_INSTRUCTION_BAD_TABLE_ID = (3, 2, 0, "OFPBIC_BAD_TABLE_ID");
    BAD_INSTRUCTION_UNSUP_METADATA = (3, 3, 0, "OFPBIC_UNSUP_METADATA");
    BAD_INSTRUCTION_UNSUP_METADATA_MASK = (3, 4, 0, "OFPBIC_UNSUP_METADATA_MASK");
    BAD_INSTRUCTION_BAD_EXPERIMENTER = (3, 5, 0, "OFPBIC_BAD_EXPERIMENTER");
    BAD_INSTRUCTION_BAD_EXP_TYPE = (3, 6, 0, "OFPBIC_BAD_EXP_TYPE");
    BAD_INSTRUCTION_BAD_LEN = (3, 7, 0, "OFPBIC_BAD_LEN");
    BAD_INSTRUCTION_EPERM = (3, 8, 0, "OFPBIC_EPERM");

    BAD_MATCH_BAD_TYPE = (4, 0, 0, "OFPBMC_BAD_TYPE");
    BAD_MATCH_BAD_LEN = (4, 1, 0, "OFPBMC_BAD_LEN");
    BAD_MATCH_BAD_TAG = (4, 2, 0, "OFPBMC_BAD_TAG");
    BAD_MATCH_BAD_DL_ADDR_MASK = (4, 3, 0, "OFPBMC_BAD_DL_ADDR_MASK");
    BAD_MATCH_BAD_NW_ADDR_MASK = (4, 4, 0, "OFPBMC_BAD_NW_ADDR_MASK");
    BAD_MATCH_BAD_WILDCARDS = (4, 5, 0, "OFPBMC_BAD_WILDCARDS");
    BAD_MATCH_BAD_FIELD = (4, 6, 0, "OFPBMC_BAD_FIELD");
    BAD_MATCH_BAD_VALUE = (4, 7, 0, "OFPBMC_BAD_VALUE");
    BAD_MATCH_BAD_MASK = (4, 8, 0, "OFPBMC_BAD_MASK");
    BAD_MATCH_BAD_PREREQ = (4, 9, 0, "OFPBMC_BAD_PREREQ");
    BAD_MATCH_DUP_FIELD = (4, 10, 0, "OFPBMC_DUP_FIELD");
    BAD_MATCH_EPERM = (4, 11, 0, "OFPBMC_EPERM");

    FLOW_MOD_FAILED_UNKNOWN = (5, 0, 0, "OFPFMFC_UNKNOWN");
    FLOW_MOD_FAILED_TABLE_FULL = (5, 1, 0, "OFPFMFC_TABLE_FULL");
    FLOW_MOD_FAILED_BAD_TABLE_ID = (5, 2, 0, "OFPFMFC_BAD_TABLE_ID");
    FLOW_MOD_FAILED_OVERLAP = (5, 3, 0, "OFPFMFC_OVERLAP");
    FLOW_MOD_FAILED_EPERM = (5, 4, 0, "OFPFMFC_EPERM");
    FLOW_MOD_FAILED_BAD_TIMEOUT = (5, 5, 0, "OFPFMFC_BAD_TIMEOUT");
    FLOW_MOD_FAILED_BAD_COMMAND = (5, 6, 0, "OFPFMFC_BAD_COMMAND");
    FLOW_MOD_FAILED_BAD_FLAGS = (5, 7, 0, "OFPFMFC_BAD_FLAGS");

    GROUP_MOD_FAILED_GROUP_EXISTS = (6, 0, 0, "OFPGMFC_GROUP_EXISTS");
    GROUP_MOD_FAILED_INVALID_GROUP = (6, 1, 0, "OFPGMFC_INVALID_GROUP");
    GROUP_MOD_FAILED_WEIGHT_UNSUPPORTED = (6, 2, 0, "OFPGMFC_WEIGHT_UNSUPPORTED");
    GROUP_MOD_FAILED_OUT_OF_GROUPS = (6, 3, 0, "OFPGMFC_OUT_OF_GROUPS");
    GROUP_MOD_FAILED_OUT_OF_BUCKETS = (6, 4, 0, "OFPGMFC_OUT_OF_BUCKETS");
    GROUP_MOD_FAILED_CHAINING_UNSUPPORTED = (6, 5, 0, "OFPGMFC_CHAINING_UNSUPPORTED");
    GROUP_MOD_FAILED_WATCH_UNSUPPORTED = (6, 6, 0, "OFPGMFC_WATCH_UNSUPPORTED");
    GROUP_MOD_FAILED_LOOP = (6, 7, 0, "OFPGMFC_LOOP");
    GROUP_MOD_FAILED_UNKNOWN_GROUP = (6, 8, 0, "OFPGMFC_UNKNOWN_GROUP");
    GROUP_MOD_FAILED_CHAINED_GROUP = (6, 9, 0, "OFPGMFC_CHAINED_GROUP");
    GROUP_MOD_FAILED_BAD_TYPE = (6, 10, 0, "OFPGMFC_BAD_TYPE");
    GROUP_MOD_FAILED_BAD_COMMAND = (6, 11, 0, "OFPGMFC_BAD_COMMAND");
    GROUP_MOD_FAILED_BAD_BUCKET = (6, 12, 0, "OFPGMFC_BAD_BUCKET");
    GROUP_MOD_FAILED_BAD_WATCH = (6, 13, 0, "OFPGMFC_BAD_WATCH");
    GROUP_MOD_FAILED_EPERM = (6, 14, 0, "OFPGMFC_EPERM");

    SWITCH_CONFIG_FAILED_BAD_FLAGS = (10, 0, 0, "OFPSCFC_BAD_FLAGS");
    SWITCH_CONFIG_FAILED_BAD_LEN = (10, 1, 0, "OFPSCFC_BAD_LEN");
    SWITCH_CONFIG_FAILED_EPERM = (10, 2, 0, "OFPSCFC_EPERM");

    ROLE_REQUEST_FAILED_STALE = (11, 0, 0, "OFPRRFC_STALE");
    ROLE_REQUEST_FAILED_UNSUP = (11, 1, 0, "OFPRRFC_UNSUP");
    ROLE_REQUEST_FAILED_BAD_ROLE = (11, 2, 0, "OFPRRFC_BAD_ROLE");

    METER_MOD_FAILED_UNKNOWN = (12, 0, 0, "OFPMMFC_UNKNOWN");
    METER_MOD_FAILED_METER_EXISTS = (12, 1, 0, "OFPMMFC_METER_EXISTS");
    METER_MOD_FAILED_INVALID_METER = (12, 2, 0, "OFPMMFC_INVALID_METER");
    METER_MOD_FAILED_UNKNOWN_METER = (12, 3, 0, "OFPMMFC_UNKNOWN_METER");
    METER_MOD_FAILED_BAD_COMMAND = (12, 4, 0, "OFPMMFC_BAD_COMMAND");
    METER_MOD_FAILED_BAD_FLAGS = (12, 5, 0, "OFPMMFC_BAD_FLAGS");
    METER_MOD_FAILED_BAD_RATE = (12, 6, 0, "OFPMMFC_BAD_RATE");
    METER_MOD_FAILED_BAD_BURST = (12, 7, 0, "OFPMMFC_BAD_BURST");
    METER_MOD_FAILED_BAD_BAND = (12, 8, 0, "OFPMMFC_BAD_BAND");
    METER_MOD_FAILED_BAD_BAND_VALUE = (12, 9, 0, "OFPMMFC_BAD_BAND_VALUE");
    METER_MOD_FAILED_OUT_OF_METERS = (12, 10, 0, "OFPMMFC_OUT_OF_METERS");
    METER_MOD_FAILED_OUT_OF_BANDS = (12, 11, 0, "OFPMMFC_OUT_OF_BANDS");

    BUNDLE_FAILED_UNKNOWN = (0xffff, 2300, ONF_EXPERIMENTER, "OFPBFC_UNKNOWN");
    BUNDLE_FAILED_EPERM = (0xffff, 2301, ONF_EXPERIMENTER, "OFPBFC_EPERM");
    BUNDLE_FAILED_BAD_ID = (0xffff, 2302, ONF_EXPERIMENTER, "OFPBFC_BAD_ID");
    BUNDLE_FAILED_BUNDLE_EXIST = (0xffff, 2303, ONF_EXPERIMENTER, "OFPBFC_BUNDLE_EXIST");
    BUNDLE_FAILED_BUNDLE_CLOSED = (0xffff, 2304, ONF_EXPERIMENTER, "OFPBFC_BUNDLE_CLOSED");
    BUNDLE_FAILED_OUT_OF_BUNDLES = (0xffff, 2305, ONF_EXPERIMENTER, "OFPBFC_OUT_OF_BUNDLES");
    BUNDLE_FAILED_BAD_TYPE = (0xffff, 2306, ONF_EXPERIMENTER, "OFPBFC_BAD_TYPE");
    BUNDLE_FAILED_BAD_FLAGS = (0xffff, 2307, ONF_EXPERIMENTER, "OFPBFC_BAD_FLAGS");
    BUNDLE_FAILED_MSG_BAD_LEN = (0xffff, 2308, ONF_EXPERIMENTER, "OFPBFC_MSG_BAD_LEN");
    BUNDLE_FAILED_MSG_BAD_XID = (0xffff, 2309, ONF_EXPERIMENTER, "OFPBFC_MSG_BAD_XID");
    BUNDLE_FAILED_MSG_UNSUP = (0xffff, 2310, ONF_EXPERIMENTER, "OFPBFC_MSG_UNSUP");
    BUNDLE_FAILED_MSG_CONFLICT = (0xffff, 2311, ONF_EXPERIMENTER, "OFPBFC_MSG_CONFLICT");
    BUNDLE_FAILED_MSG_TOO_MANY = (0xffff, 2312, ONF_EXPERIMENTER, "OFPBFC_MSG_TOO_MANY");
    BUNDLE_FAILED_MSG_FAILED = (0xffff, 2313, ONF_EXPERIMENTER, "OFPBFC_MSG_FAILED");
    BUNDLE_FAILED_TIMEOUT = (0xffff, 2314, ONF_EXPERIMENTER, "OFPBFC_TIMEOUT");
    BUNDLE_FAILED_BUNDLE_IN_PROGRESS = (0xffff, 2315, ONF_EXPERIMENTER, "OFPBFC_BUNDLE_IN_PROGRESS");
}

impl ErrorCode {
    pub const fn new(etype: u16, code: u16) -> Self {
        ErrorCode { etype, code, experimenter: 0 }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None if self.etype == 0xffff => {
                write!(f, "experimenter {:#x} error {}", self.experimenter, self.code)
            }
            None => write!(f, "error type {} code {}", self.etype, self.code),
        }
    }
}

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {detail} ({code})")]
pub struct DecodeError {
    /// What OVS would answer with.
    pub code: ErrorCode,
    /// The structure being decoded ("ofp_match", "NXAST_LEARN", ...).
    pub context: &'static str,
    pub detail: String,
}

impl DecodeError {
    pub fn new(code: ErrorCode, context: &'static str, detail: impl Into<String>) -> Self {
        DecodeError { code, context, detail: detail.into() }
    }
}

/// Why flow text (or any `ovs-ofctl` style text) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token:?}: {reason}")]
pub struct TextError {
    /// The token that could not be understood, as written.
    pub token: String,
    pub reason: String,
}

impl TextError {
    pub fn new(token: impl Into<String>, reason: impl Into<String>) -> Self {
        TextError { token: token.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_known() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert((c.etype, c.code, c.experimenter)), "{c:?} twice");
            assert!(c.name().is_some());
        }
        assert_eq!(ErrorCode::BAD_REQUEST_BAD_LEN.to_string(), "OFPBRC_BAD_LEN");
        assert_eq!(ErrorCode::new(99, 1).to_string(), "error type 99 code 1");
    }
}
