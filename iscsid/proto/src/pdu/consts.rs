//! Protocol constants from RFC 7143 section 11 (and SAM for SCSI status).

/// Opcodes (the low six bits of BHS byte 0).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RSP: u8 = 0x22;
    pub const LOGIN_RSP: u8 = 0x23;
    pub const TEXT_RSP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RSP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MSG: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Login stages (CSG/NSG).
pub mod stage {
    pub const SECURITY_NEGOTIATION: u8 = 0;
    pub const OPERATIONAL_NEGOTIATION: u8 = 1;
    pub const FULL_FEATURE_PHASE: u8 = 3;
}

/// Login Response Status-Class values.
pub mod login_class {
    pub const SUCCESS: u8 = 0;
    pub const REDIRECTION: u8 = 1;
    pub const INITIATOR_ERROR: u8 = 2;
    pub const TARGET_ERROR: u8 = 3;
}

/// Login Response Status-Detail values (RFC 7143 section 11.13.5), by class.
pub mod login_detail {
    pub const REDIRECT_TEMPORARY: u8 = 0x01;
    pub const REDIRECT_PERMANENT: u8 = 0x02;

    pub const INITIATOR_ERROR: u8 = 0x00;
    pub const AUTH_FAILED: u8 = 0x01;
    pub const FORBIDDEN: u8 = 0x02;
    pub const NOT_FOUND: u8 = 0x03;
    pub const REMOVED: u8 = 0x04;
    pub const UNSUPPORTED_VERSION: u8 = 0x05;
    pub const TOO_MANY_CONNECTIONS: u8 = 0x06;
    pub const MISSING_PARAMETER: u8 = 0x07;
    pub const CANT_INCLUDE_IN_SESSION: u8 = 0x08;
    pub const SESSION_TYPE_UNSUPPORTED: u8 = 0x09;
    pub const SESSION_DOES_NOT_EXIST: u8 = 0x0a;
    pub const INVALID_DURING_LOGIN: u8 = 0x0b;

    pub const TARGET_ERROR: u8 = 0x00;
    pub const SERVICE_UNAVAILABLE: u8 = 0x01;
    pub const OUT_OF_RESOURCES: u8 = 0x02;
}

/// Reject reasons.
pub mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    pub const LONG_OP_REJECT: u8 = 0x0a;
    pub const NEGOTIATION_RESET: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Asynchronous Message AsyncEvent codes.
pub mod async_event {
    pub const SCSI_EVENT: u8 = 0;
    pub const LOGOUT_REQUEST: u8 = 1;
    pub const CONNECTION_DROP: u8 = 2;
    pub const SESSION_DROP: u8 = 3;
    pub const NEGOTIATION_REQUEST: u8 = 4;
    pub const TASK_TERMINATION: u8 = 5;
    pub const VENDOR_SPECIFIC: u8 = 255;
}

/// Task Management Function request codes.
pub mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;
}

/// Task Management Function response codes.
pub mod tmf_rsp {
    pub const COMPLETE: u8 = 0;
    pub const NO_TASK: u8 = 1;
    pub const NO_LUN: u8 = 2;
    pub const TASK_ALLEGIANT: u8 = 3;
    pub const REASSIGN_UNSUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTH_FAILED: u8 = 6;
    pub const REJECTED: u8 = 255;
}

/// Logout request reason codes.
pub mod logout_reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_FOR_RECOVERY: u8 = 2;
}

/// Logout response codes.
pub mod logout_rsp {
    pub const SUCCESS: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_UNSUPPORTED: u8 = 2;
    pub const CLEANUP_FAILED: u8 = 3;
}

/// SCSI Response "Response" codes.
pub mod scsi_rsp {
    pub const COMPLETED: u8 = 0;
    pub const TARGET_FAILURE: u8 = 1;
}

/// SCSI status codes (SAM).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const ACA_ACTIVE: u8 = 0x30;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// SCSI Command task attributes (ATTR).
pub mod attr {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}

/// SNACK types.
pub mod snack {
    pub const DATA_R2T: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA_ACK: u8 = 2;
    pub const R_DATA: u8 = 3;
}
