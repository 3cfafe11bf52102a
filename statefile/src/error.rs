//! Typed errors: each variant says what is wrong with a statefile, so that a
//! refused restore can tell the user why.

use crate::header::Arch;

/// Everything that can go wrong writing or reading a statefile.
#[derive(Debug, thiserror::Error)]
pub enum StatefileError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error("not a cryo statefile (bad magic {found:02x?})")]
    BadMagic { found: Vec<u8> },

    #[error("statefile format version {found} is newer than supported version {supported}")]
    FutureFormatVersion { found: u32, supported: u32 },

    #[error("statefile format version {found} is not supported")]
    UnsupportedFormatVersion { found: u32 },

    #[error("statefile was written for {file}, this host is {host}")]
    WrongArch { file: Arch, host: Arch },

    #[error("statefile names unknown architecture code {code}")]
    UnknownArch { code: u8 },

    #[error("statefile truncated: expected {expected} bytes, found {actual}")]
    Truncated { expected: u64, actual: u64 },

    #[error("statefile has trailing data: expected {expected} bytes, found {actual}")]
    TrailingData { expected: u64, actual: u64 },

    #[error("statefile is incomplete: its writer never finished it")]
    Incomplete,

    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },

    #[error("corrupt header: {reason}")]
    CorruptHeader { reason: String },

    #[error("corrupt trailer: {reason}")]
    CorruptTrailer { reason: String },

    #[error("index checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    IndexChecksum { stored: u32, computed: u32 },

    #[error("corrupt index: {reason}")]
    CorruptIndex { reason: String },

    #[error(
        "checksum mismatch in section {section} (stored {stored:#010x}, computed {computed:#010x})"
    )]
    SectionChecksum {
        section: String,
        stored: u32,
        computed: u32,
    },

    #[error("corrupt section {section}: {reason}")]
    CorruptSection { section: String, reason: String },

    #[error("section {section} claims {claimed} bytes uncompressed from {stored} stored; at most {limit} are believable (1:{ratio} plus {slack} bytes)", ratio = crate::section::MAX_EXPANSION, slack = crate::section::EXPANSION_SLACK)]
    ImplausibleExpansion {
        section: String,
        stored: u64,
        claimed: u64,
        limit: u64,
    },

    #[error("section {section} not found")]
    MissingSection { section: String },

    #[error("section {section} appears twice")]
    DuplicateSection { section: String },

    #[error("corrupt chunk {chunk} in section {section}: {reason}")]
    CorruptChunk {
        section: String,
        chunk: u64,
        reason: String,
    },

    #[error("corrupt memory map of section {section}: {reason}")]
    CorruptMemoryMap { section: String, reason: String },

    #[error("impossible size: {what}")]
    ImpossibleSize { what: String },

    #[error("{what} is {value}, beyond the limit of {limit}")]
    LimitExceeded {
        what: &'static str,
        value: u64,
        limit: u64,
    },

    #[error("offset {offset:#x} is outside the memory image of {len} bytes")]
    PageOutOfRange { offset: u64, len: u64 },

    #[error("chunk {chunk} cannot be mapped: {reason}")]
    NotMappable { chunk: u64, reason: String },

    #[error("type {type_name} is not in the statefile's type table")]
    UnknownType { type_name: String },

    #[error(
        "type {type_name} was saved at version {found}, newer than supported version {supported}"
    )]
    FutureTypeVersion {
        type_name: String,
        found: u32,
        supported: u32,
    },

    #[error("type {type_name} was saved at version {found}, older than the oldest loadable version {oldest}")]
    TypeVersionTooOld {
        type_name: String,
        found: u32,
        oldest: u32,
    },

    #[error("type name {type_name} registered with two versions ({first} and {second})")]
    TypeConflict {
        type_name: String,
        first: u32,
        second: u32,
    },

    #[error("cannot decode {context}: {reason}")]
    Decode { context: String, reason: String },

    #[error("cannot encode {context}: {reason}")]
    Encode { context: String, reason: String },

    #[error("{type_name} left {remaining} bytes of its record unread")]
    TrailingBytes { type_name: String, remaining: u64 },

    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },

    #[error("object {type_name} #{id} appears twice")]
    DuplicateObject { type_name: String, id: u64 },

    #[error("object {type_name} #{id} is referred to but not in the statefile")]
    MissingObject { type_name: String, id: u64 },

    #[error("object {type_name} #{id} is in the statefile but nothing refers to it")]
    UnreferencedObject { type_name: String, id: u64 },
}

/// Result alias used throughout the crate.
pub type Result<T, E = StatefileError> = std::result::Result<T, E>;

impl StatefileError {
    pub(crate) fn impossible(what: impl Into<String>) -> Self {
        StatefileError::ImpossibleSize { what: what.into() }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        StatefileError::InvalidArgument {
            reason: reason.into(),
        }
    }

    /// A short stable name for the kind of damage, for scripts (`cryo inspect --json`).
    pub fn kind(&self) -> &'static str {
        use StatefileError::*;
        match self {
            Io(_) => "io",
            BadMagic { .. } => "bad_magic",
            FutureFormatVersion { .. } => "future_format_version",
            UnsupportedFormatVersion { .. } => "unsupported_format_version",
            WrongArch { .. } => "wrong_arch",
            UnknownArch { .. } => "unknown_arch",
            Truncated { .. } => "truncated",
            TrailingData { .. } => "trailing_data",
            Incomplete => "incomplete",
            HeaderChecksum { .. } => "header_checksum",
            CorruptHeader { .. } => "corrupt_header",
            CorruptTrailer { .. } => "corrupt_trailer",
            IndexChecksum { .. } => "index_checksum",
            CorruptIndex { .. } => "corrupt_index",
            SectionChecksum { .. } => "section_checksum",
            CorruptSection { .. } => "corrupt_section",
            ImplausibleExpansion { .. } => "implausible_expansion",
            MissingSection { .. } => "missing_section",
            DuplicateSection { .. } => "duplicate_section",
            CorruptChunk { .. } => "corrupt_chunk",
            CorruptMemoryMap { .. } => "corrupt_memory_map",
            ImpossibleSize { .. } => "impossible_size",
            LimitExceeded { .. } => "limit_exceeded",
            PageOutOfRange { .. } => "page_out_of_range",
            NotMappable { .. } => "not_mappable",
            UnknownType { .. } => "unknown_type",
            FutureTypeVersion { .. } => "future_type_version",
            TypeVersionTooOld { .. } => "type_version_too_old",
            TypeConflict { .. } => "type_conflict",
            Decode { .. } => "decode",
            Encode { .. } => "encode",
            TrailingBytes { .. } => "trailing_bytes",
            InvalidArgument { .. } => "invalid_argument",
            DuplicateObject { .. } => "duplicate_object",
            MissingObject { .. } => "missing_object",
            UnreferencedObject { .. } => "unreferenced_object",
        }
    }
}
