//! The native protocol's cluster-link API (issue 23): one request kind, `Link`, whose action
//! creates, deletes, describes, pauses, resumes or promotes a link, and whose answer holds
//! the links with the state of each mirror partition the answering broker leads (a tool
//! asks every broker and merges the partitions).

use super::*;

/// What a [`LinkRequest`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Create the link from its definition text.
    Create = 1,
    /// Delete it (its mirror topics stay, read-only until promoted).
    Delete = 2,
    /// Describe it (an empty name: every link).
    Describe = 3,
    /// Stop fetching; mirror topics stay read-only.
    Pause = 4,
    /// Fetch again from each mirror partition's log end.
    Resume = 5,
    /// Make mirror topics writable (the named ones, or all of the link's).
    Promote = 6,
}

impl LinkAction {
    fn from_i8(code: i8) -> Result<LinkAction, DecodeError> {
        Ok(match code {
            1 => LinkAction::Create,
            2 => LinkAction::Delete,
            3 => LinkAction::Describe,
            4 => LinkAction::Pause,
            5 => LinkAction::Resume,
            6 => LinkAction::Promote,
            _ => return Err(DecodeError::BadString("link action")),
        })
    }
}

/// A link request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// What to do.
    pub action: LinkAction,
    /// The link (empty with Describe: every link).
    pub name: String,
    /// The definition text (Create only).
    pub definition: String,
    /// Destination topics (Promote: empty means every mirror topic of the link).
    pub topics: Vec<String>,
}

/// One mirror partition as its destination leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPartitionStatus {
    /// The destination topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// `mirroring`, `paused`, `failed: REASON`, `promoted`.
    pub state: String,
    /// The source's high watermark when last fetched (-1: not yet).
    pub source_high_watermark: i64,
    /// The mirror's log end: everything before it is mirrored.
    pub mirrored_offset: i64,
    /// Records behind the source.
    pub lag_records: i64,
    /// Milliseconds since the mirror last had everything the source had.
    pub lag_ms: u64,
}

/// A link as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Its name.
    pub name: String,
    /// Its definition, the source password hidden.
    pub definition: String,
    /// `active`, `paused`, or `failed: REASON` (the source cannot be reached or read).
    pub state: String,
    /// The mirror partitions the answering broker leads.
    pub partitions: Vec<MirrorPartitionStatus>,
}

/// A link answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for people (empty when none).
    pub message: String,
    /// The links described (Describe), or the one changed.
    pub links: Vec<LinkStatus>,
}

impl LinkRequest {
    /// Decodes the body.
    ///
    /// # Errors
    /// A malformed body.
    pub fn decode(r: &mut Reader) -> Result<LinkRequest, DecodeError> {
        Ok(LinkRequest {
            action: LinkAction::from_i8(r.i8("action")?)?,
            name: r.string("name")?,
            definition: r.string("definition")?,
            topics: read_strings(r, "topics")?,
        })
    }

    /// Encodes the body.
    ///
    /// # Errors
    /// A value too long for its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_i8(self.action as i8);
        out.put_string("name", &self.name)?;
        out.put_string("definition", &self.definition)?;
        write_strings(out, "topics", &self.topics)
    }
}

impl LinkResponse {
    /// Decodes the body.
    ///
    /// # Errors
    /// A malformed body.
    pub fn decode(r: &mut Reader) -> Result<LinkResponse, DecodeError> {
        let error = ErrorCode::from_u16(r.u16("error")?);
        let message = r.string("message")?;
        let count = r.count("links", 10)?;
        let links = (0..count)
            .map(|_| {
                let name = r.string("name")?;
                let definition = r.string("definition")?;
                let state = r.string("state")?;
                let count = r.count("partitions", 40)?;
                let partitions = (0..count)
                    .map(|_| {
                        Ok(MirrorPartitionStatus {
                            topic: r.string("topic")?,
                            partition: r.u32("partition")?,
                            state: r.string("state")?,
                            source_high_watermark: r.i64("source_high_watermark")?,
                            mirrored_offset: r.i64("mirrored_offset")?,
                            lag_records: r.i64("lag_records")?,
                            lag_ms: r.i64("lag_ms")?.max(0) as u64,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                Ok(LinkStatus {
                    name,
                    definition,
                    state,
                    partitions,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(LinkResponse {
            error,
            message,
            links,
        })
    }

    /// Encodes the body.
    ///
    /// # Errors
    /// A value too long for its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u16(self.error as u16);
        out.put_string("message", &self.message)?;
        out.put_count("links", self.links.len())?;
        for link in &self.links {
            out.put_string("name", &link.name)?;
            out.put_string("definition", &link.definition)?;
            out.put_string("state", &link.state)?;
            out.put_count("partitions", link.partitions.len())?;
            for p in &link.partitions {
                out.put_string("topic", &p.topic)?;
                out.put_u32(p.partition);
                out.put_string("state", &p.state)?;
                out.put_i64(p.source_high_watermark);
                out.put_i64(p.mirrored_offset);
                out.put_i64(p.lag_records);
                out.put_i64(p.lag_ms.min(i64::MAX as u64) as i64);
            }
        }
        Ok(())
    }
}
