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

/// Nicira's vendor (experimenter) id: NX messages, actions, OXM class and errors.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;

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
    BAD_REQUEST_IS_SLAVE = (1, 10, 0, "OFPBRC_IS_SECONDARY");
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

    PORT_MOD_FAILED_BAD_PORT = (7, 0, 0, "OFPPMFC_BAD_PORT");
    PORT_MOD_FAILED_BAD_HW_ADDR = (7, 1, 0, "OFPPMFC_BAD_HW_ADDR");
    PORT_MOD_FAILED_BAD_CONFIG = (7, 2, 0, "OFPPMFC_BAD_CONFIG");
    PORT_MOD_FAILED_BAD_ADVERTISE = (7, 3, 0, "OFPPMFC_BAD_ADVERTISE");
    PORT_MOD_FAILED_EPERM = (7, 4, 0, "OFPPMFC_EPERM");
    TABLE_MOD_FAILED_BAD_TABLE = (8, 0, 0, "OFPTMFC_BAD_TABLE");
    TABLE_MOD_FAILED_BAD_CONFIG = (8, 1, 0, "OFPTMFC_BAD_CONFIG");
    TABLE_MOD_FAILED_EPERM = (8, 2, 0, "OFPTMFC_EPERM");
    QUEUE_OP_FAILED_BAD_PORT = (9, 0, 0, "OFPQOFC_BAD_PORT");
    QUEUE_OP_FAILED_BAD_QUEUE = (9, 1, 0, "OFPQOFC_BAD_QUEUE");
    QUEUE_OP_FAILED_EPERM = (9, 2, 0, "OFPQOFC_EPERM");
    TABLE_FEATURES_FAILED_BAD_TABLE = (13, 0, 0, "OFPTFFC_BAD_TABLE");
    TABLE_FEATURES_FAILED_BAD_METADATA = (13, 1, 0, "OFPTFFC_BAD_METADATA");
    BAD_PROPERTY_BAD_TYPE = (13, 2, 0, "OFPBPC_BAD_TYPE");
    BAD_PROPERTY_BAD_LEN = (13, 3, 0, "OFPBPC_BAD_LEN");
    BAD_PROPERTY_BAD_VALUE = (13, 4, 0, "OFPBPC_BAD_VALUE");
    TABLE_FEATURES_FAILED_EPERM = (13, 5, 0, "OFPTFFC_EPERM");

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

    // Nicira extension errors: in OF1.2+ OVS sends them as experimenter errors (type 0xffff,
    // exp_code, NX_VENDOR_ID), per `include/openvswitch/ofp-errors.h` (`NX1.2+(n)`); the
    // names are what `ovs-ofctl ofp-print` (OVS 3.1) prints for each code.
    NX_BAD_REQUEST_NXM_INVALID = (0xffff, 2, NX_VENDOR_ID, "NXBRC_NXM_INVALID");
    NX_BAD_REQUEST_NXM_BAD_TYPE = (0xffff, 3, NX_VENDOR_ID, "NXBRC_NXM_BAD_TYPE");
    NX_BAD_REQUEST_MUST_BE_ZERO = (0xffff, 4, NX_VENDOR_ID, "NXBRC_MUST_BE_ZERO");
    NX_BAD_REQUEST_BAD_REASON = (0xffff, 5, NX_VENDOR_ID, "NXBRC_BAD_REASON");
    FLOW_MONITOR_FAILED_MONITOR_EXISTS = (0xffff, 6, NX_VENDOR_ID, "OFPMOFC_MONITOR_EXISTS");
    FLOW_MONITOR_FAILED_BAD_FLAGS = (0xffff, 7, NX_VENDOR_ID, "OFPMOFC_BAD_FLAGS");
    FLOW_MONITOR_FAILED_UNKNOWN_MONITOR = (0xffff, 8, NX_VENDOR_ID, "OFPMOFC_UNKNOWN_MONITOR");
    NX_BAD_REQUEST_FM_BAD_EVENT = (0xffff, 9, NX_VENDOR_ID, "NXBRC_FM_BAD_EVENT");
    NX_BAD_REQUEST_UNENCODABLE_ERROR = (0xffff, 10, NX_VENDOR_ID, "NXBRC_UNENCODABLE_ERROR");
    NX_BAD_ACTION_MUST_BE_ZERO = (0xffff, 11, NX_VENDOR_ID, "NXBAC_MUST_BE_ZERO");
    NX_FLOW_MOD_FAILED_HARDWARE = (0xffff, 12, NX_VENDOR_ID, "NXFMFC_HARDWARE");
    NX_FLOW_MOD_FAILED_BAD_TABLE_ID = (0xffff, 13, NX_VENDOR_ID, "NXFMFC_BAD_TABLE_ID");
    NX_BAD_ACTION_BAD_CONJUNCTION = (0xffff, 15, NX_VENDOR_ID, "NXBAC_BAD_CONJUNCTION");
    NX_TLV_TABLE_MOD_FAILED_BAD_COMMAND = (0xffff, 16, NX_VENDOR_ID, "NXTTMFC_BAD_COMMAND");
    NX_TLV_TABLE_MOD_FAILED_BAD_OPT_LEN = (0xffff, 17, NX_VENDOR_ID, "NXTTMFC_BAD_OPT_LEN");
    NX_TLV_TABLE_MOD_FAILED_BAD_FIELD_IDX = (0xffff, 18, NX_VENDOR_ID, "NXTTMFC_BAD_FIELD_IDX");
    NX_TLV_TABLE_MOD_FAILED_TABLE_FULL = (0xffff, 19, NX_VENDOR_ID, "NXTTMFC_TABLE_FULL");
    NX_TLV_TABLE_MOD_FAILED_ALREADY_MAPPED = (0xffff, 20, NX_VENDOR_ID, "NXTTMFC_ALREADY_MAPPED");
    NX_TLV_TABLE_MOD_FAILED_DUP_ENTRY = (0xffff, 21, NX_VENDOR_ID, "NXTTMFC_DUP_ENTRY");
    NX_RESUME_NOT_SUPPORTED = (0xffff, 34, NX_VENDOR_ID, "NXR_NOT_SUPPORTED");
    NX_RESUME_STALE = (0xffff, 35, NX_VENDOR_ID, "NXR_STALE");
    NX_STATS_NOT_CONFIGURED = (0xffff, 36, NX_VENDOR_ID, "NXST_NOT_CONFIGURED");
    NX_FLOW_MOD_FAILED_INVALID_TLV_FIELD = (0xffff, 37, NX_VENDOR_ID, "NXFMFC_INVALID_TLV_FIELD");
    NX_TLV_TABLE_MOD_FAILED_INVALID_TLV_DEL = (0xffff, 38, NX_VENDOR_ID, "NXTTMFC_INVALID_TLV_DEL");
    NX_BAD_ACTION_BAD_HEADER_TYPE = (0xffff, 39, NX_VENDOR_ID, "NXBAC_BAD_HEADER_TYPE");
    NX_BAD_ACTION_UNKNOWN_ED_PROP = (0xffff, 40, NX_VENDOR_ID, "NXBAC_UNKNOWN_ED_PROP");
    NX_BAD_ACTION_BAD_ED_PROP = (0xffff, 41, NX_VENDOR_ID, "NXBAC_BAD_ED_PROP");
    NX_BAD_ACTION_CT_DATAPATH_SUPPORT = (0xffff, 42, NX_VENDOR_ID, "NXBAC_CT_DATAPATH_SUPPORT");
    NX_BAD_MATCH_CT_DATAPATH_SUPPORT = (0xffff, 43, NX_VENDOR_ID, "NXBMC_CT_DATAPATH_SUPPORT");
    NX_TABLE_FEATURES_FAILED_DUP_TABLE = (0xffff, 44, NX_VENDOR_ID, "NXTFFC_DUP_TABLE");

    // ONF extension errors OVS uses in OF1.3 (`ONF1.3(n)`), besides the bundle ones above.
    ONF_FLOW_MOD_FAILED_BAD_PRIORITY = (0xffff, 2360, ONF_EXPERIMENTER, "OFPFMFC_BAD_PRIORITY");
    ONF_ASYNC_CONFIG_FAILED_INVALID = (0xffff, 2370, ONF_EXPERIMENTER, "OFPACFC_INVALID");
    ONF_ASYNC_CONFIG_FAILED_UNSUPPORTED = (0xffff, 2371, ONF_EXPERIMENTER, "OFPACFC_UNSUPPORTED");
    ONF_ASYNC_CONFIG_FAILED_EPERM = (0xffff, 2372, ONF_EXPERIMENTER, "OFPACFC_EPERM");
    ONF_BAD_INSTRUCTION_DUP_INST = (0xffff, 2600, ONF_EXPERIMENTER, "OFPBIC_DUP_INST");
    ONF_BAD_REQUEST_MULTIPART_REQUEST_TIMEOUT = (0xffff, 2640, ONF_EXPERIMENTER, "OFPBRC_MULTIPART_REQUEST_TIMEOUT");
    ONF_BAD_REQUEST_MULTIPART_REPLY_TIMEOUT = (0xffff, 2641, ONF_EXPERIMENTER, "OFPBRC_MULTIPART_REPLY_TIMEOUT");
    ONF_BAD_ACTION_BAD_SET_MASK = (0xffff, 4250, ONF_EXPERIMENTER, "OFPBAC_BAD_SET_MASK");
    ONF_BAD_PROPERTY_TOO_MANY = (0xffff, 4443, ONF_EXPERIMENTER, "OFPBPC_TOO_MANY");
    ONF_BAD_PROPERTY_DUP_TYPE = (0xffff, 4444, ONF_EXPERIMENTER, "OFPBPC_DUP_TYPE");
    ONF_BAD_PROPERTY_BAD_EXPERIMENTER = (0xffff, 4445, ONF_EXPERIMENTER, "OFPBPC_BAD_EXPERIMENTER");
    ONF_BAD_PROPERTY_BAD_EXP_TYPE = (0xffff, 4446, ONF_EXPERIMENTER, "OFPBPC_BAD_EXP_TYPE");
    ONF_BAD_PROPERTY_BAD_EXP_VALUE = (0xffff, 4447, ONF_EXPERIMENTER, "OFPBPC_BAD_EXP_VALUE");
    ONF_BAD_PROPERTY_EPERM = (0xffff, 4448, ONF_EXPERIMENTER, "OFPBPC_EPERM");
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
#[allow(clippy::unwrap_used)]
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
        assert_eq!(ErrorCode::BAD_REQUEST_IS_SLAVE.to_string(), "OFPBRC_IS_SECONDARY");
    }

    /// Nicira errors in OF1.3 are experimenter errors with NX_VENDOR_ID; OVS prints their names.
    #[test]
    fn nicira_errors_print_like_ovs() {
        use crate::openflow::message::{decode, ofp_print};
        use crate::openflow::wire::from_hex;
        for (code, want) in [
            (ErrorCode::NX_BAD_REQUEST_BAD_REASON, "NXBRC_BAD_REASON"),
            (ErrorCode::NX_BAD_ACTION_MUST_BE_ZERO, "NXBAC_MUST_BE_ZERO"),
            (ErrorCode::NX_FLOW_MOD_FAILED_BAD_TABLE_ID, "NXFMFC_BAD_TABLE_ID"),
            (ErrorCode::NX_BAD_ACTION_BAD_CONJUNCTION, "NXBAC_BAD_CONJUNCTION"),
        ] {
            let hex = format!("04010018 00000005 ffff{:04x} 00002320 04000008 00000000", code.code);
            let bytes = from_hex(&hex).unwrap();
            let (h, msg) = decode(&bytes).unwrap();
            let ours = ofp_print(&h, &msg);
            assert!(ours.starts_with(&format!("OFPT_ERROR (OF1.3) (xid=0x5): {want}\n")), "{ours}");
        }
    }

    /// The same Nicira errors, printed by OVS itself: the text is identical to ours.
    #[test]
    #[cfg_attr(not(feature = "ovs"), ignore = "needs Open vSwitch (ovs-ofctl): cargo test --features ovs")]
    fn nicira_errors_print_as_ovs_prints_them() {
        use crate::openflow::message::{decode, ofp_print};
        use crate::openflow::wire::from_hex;
        for code in [
            ErrorCode::NX_BAD_REQUEST_BAD_REASON,
            ErrorCode::NX_BAD_ACTION_MUST_BE_ZERO,
            ErrorCode::NX_FLOW_MOD_FAILED_BAD_TABLE_ID,
            ErrorCode::NX_BAD_ACTION_BAD_CONJUNCTION,
        ] {
            let hex = format!("04010018 00000005 ffff{:04x} 00002320 04000008 00000000", code.code);
            let bytes = from_hex(&hex).unwrap();
            let (h, msg) = decode(&bytes).unwrap();
            let ovs = crate::oracle::ofp_print(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ofp_print(&h, &msg).trim_end(), ovs.trim_end(), "{code}");
        }
    }
}
