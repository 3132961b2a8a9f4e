//! Encoding and decoding the security APIs' bodies (types: `security.rs`).

use super::*;

impl SecurityRequest {
    /// The request's API key.
    pub fn api_key(&self) -> ApiKey {
        match self {
            SecurityRequest::SaslHandshake { .. } => ApiKey::SaslHandshake,
            SecurityRequest::SaslAuthenticate { .. } => ApiKey::SaslAuthenticate,
            SecurityRequest::DescribeUsers { .. } => ApiKey::DescribeUsers,
            SecurityRequest::AlterUsers { .. } => ApiKey::AlterUsers,
            SecurityRequest::DescribeAcls { .. } => ApiKey::DescribeAcls,
            SecurityRequest::CreateAcls { .. } => ApiKey::CreateAcls,
            SecurityRequest::DeleteAcls { .. } => ApiKey::DeleteAcls,
            SecurityRequest::DescribeQuotas => ApiKey::DescribeQuotas,
            SecurityRequest::AlterQuotas { .. } => ApiKey::AlterQuotas,
        }
    }

    /// Decodes the body of security API `api`.
    ///
    /// # Errors
    /// A malformed body, or another API.
    pub fn decode(api: ApiKey, r: &mut Reader) -> Result<SecurityRequest, DecodeError> {
        Ok(match api {
            ApiKey::SaslHandshake => SecurityRequest::SaslHandshake {
                mechanism: r.string("mechanism")?,
            },
            ApiKey::SaslAuthenticate => SecurityRequest::SaslAuthenticate {
                auth_bytes: r.bytes("auth_bytes")?,
            },
            ApiKey::DescribeUsers => SecurityRequest::DescribeUsers {
                users: read_strings(r, "users")?,
            },
            ApiKey::AlterUsers => {
                let count = r.count("upsertions", 20)?;
                let upsertions = (0..count)
                    .map(|_| {
                        Ok(ScramUpsertion {
                            user: r.string("user")?,
                            mechanism: r.string("mechanism")?,
                            iterations: r.u32("iterations")?,
                            salt: r.bytes("salt")?,
                            salted_password: r.bytes("salted_password")?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                let count = r.count("deletions", 4)?;
                let deletions = (0..count)
                    .map(|_| Ok((r.string("user")?, r.string("mechanism")?)))
                    .collect::<Result<_, DecodeError>>()?;
                SecurityRequest::AlterUsers {
                    upsertions,
                    deletions,
                }
            }
            ApiKey::DescribeAcls => SecurityRequest::DescribeAcls {
                filter: read_filter(r)?,
            },
            ApiKey::CreateAcls => {
                let count = r.count("acls", 10)?;
                let acls = (0..count).map(|_| read_acl(r)).collect::<Result<_, _>>()?;
                SecurityRequest::CreateAcls { acls }
            }
            ApiKey::DeleteAcls => {
                let count = r.count("filters", 7)?;
                let filters = (0..count)
                    .map(|_| read_filter(r))
                    .collect::<Result<_, _>>()?;
                SecurityRequest::DeleteAcls { filters }
            }
            ApiKey::DescribeQuotas => SecurityRequest::DescribeQuotas,
            ApiKey::AlterQuotas => SecurityRequest::AlterQuotas {
                changes: read_quotas(r)?,
            },
            other => return Err(DecodeError::UnknownApi(other as u16)),
        })
    }

    /// Encodes the body.
    ///
    /// # Errors
    /// A value too long for its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            SecurityRequest::SaslHandshake { mechanism } => {
                out.put_string("mechanism", mechanism)?
            }
            SecurityRequest::SaslAuthenticate { auth_bytes } => {
                out.put_sized("auth_bytes", auth_bytes)?
            }
            SecurityRequest::DescribeUsers { users } => write_strings(out, "users", users)?,
            SecurityRequest::AlterUsers {
                upsertions,
                deletions,
            } => {
                out.put_count("upsertions", upsertions.len())?;
                for u in upsertions {
                    out.put_string("user", &u.user)?;
                    out.put_string("mechanism", &u.mechanism)?;
                    out.put_u32(u.iterations);
                    out.put_sized("salt", &u.salt)?;
                    out.put_sized("salted_password", &u.salted_password)?;
                }
                out.put_count("deletions", deletions.len())?;
                for (user, mechanism) in deletions {
                    out.put_string("user", user)?;
                    out.put_string("mechanism", mechanism)?;
                }
            }
            SecurityRequest::DescribeAcls { filter } => write_filter(out, filter)?,
            SecurityRequest::CreateAcls { acls } => write_acls(out, acls)?,
            SecurityRequest::DeleteAcls { filters } => {
                out.put_count("filters", filters.len())?;
                for filter in filters {
                    write_filter(out, filter)?;
                }
            }
            SecurityRequest::DescribeQuotas => {}
            SecurityRequest::AlterQuotas { changes } => write_quotas(out, changes)?,
        }
        Ok(())
    }
}

impl SecurityResponse {
    /// Decodes the body of security API `api`.
    ///
    /// # Errors
    /// A malformed body, or another API.
    pub fn decode(api: ApiKey, r: &mut Reader) -> Result<SecurityResponse, DecodeError> {
        let error = |r: &mut Reader| r.u16("error").map(ErrorCode::from_u16);
        Ok(match api {
            ApiKey::SaslHandshake => SecurityResponse::SaslHandshake {
                error: error(r)?,
                mechanisms: read_strings(r, "mechanisms")?,
            },
            ApiKey::SaslAuthenticate => SecurityResponse::SaslAuthenticate {
                error: error(r)?,
                message: r.string("message")?,
                auth_bytes: r.bytes("auth_bytes")?,
                // A negative lifetime means none, as 0 does.
                session_lifetime_ms: r.i64("session_lifetime_ms")?.max(0) as u64,
            },
            ApiKey::DescribeUsers => {
                let error = error(r)?;
                let count = r.count("users", 8)?;
                let users = (0..count)
                    .map(|_| {
                        let user = r.string("user")?;
                        let error = r.u16("error").map(ErrorCode::from_u16)?;
                        let count = r.count("credentials", 6)?;
                        let credentials = (0..count)
                            .map(|_| Ok((r.string("mechanism")?, r.u32("iterations")?)))
                            .collect::<Result<_, DecodeError>>()?;
                        Ok(UserDescription {
                            user,
                            error,
                            credentials,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                SecurityResponse::DescribeUsers { error, users }
            }
            ApiKey::AlterUsers => SecurityResponse::AlterUsers {
                results: read_topic_results(r)?,
            },
            ApiKey::DescribeAcls => SecurityResponse::DescribeAcls {
                error: error(r)?,
                message: r.string("message")?,
                acls: read_acls(r)?,
            },
            ApiKey::CreateAcls => SecurityResponse::CreateAcls {
                results: read_topic_results(r)?,
            },
            ApiKey::DeleteAcls => {
                let count = r.count("results", 8)?;
                let results = (0..count)
                    .map(|_| {
                        Ok(DeleteAclsResult {
                            error: error(r)?,
                            message: r.string("message")?,
                            removed: read_acls(r)?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                SecurityResponse::DeleteAcls { results }
            }
            ApiKey::DescribeQuotas => SecurityResponse::DescribeQuotas {
                error: error(r)?,
                quotas: read_quotas(r)?,
            },
            ApiKey::AlterQuotas => SecurityResponse::AlterQuotas {
                results: read_topic_results(r)?,
            },
            other => return Err(DecodeError::UnknownApi(other as u16)),
        })
    }

    /// Encodes the body.
    ///
    /// # Errors
    /// A value too long for its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            SecurityResponse::SaslHandshake { error, mechanisms } => {
                out.put_u16(*error as u16);
                write_strings(out, "mechanisms", mechanisms)?;
            }
            SecurityResponse::SaslAuthenticate {
                error,
                message,
                auth_bytes,
                session_lifetime_ms,
            } => {
                out.put_u16(*error as u16);
                out.put_string("message", message)?;
                out.put_sized("auth_bytes", auth_bytes)?;
                out.put_i64(i64::try_from(*session_lifetime_ms).unwrap_or(i64::MAX));
            }
            SecurityResponse::DescribeUsers { error, users } => {
                out.put_u16(*error as u16);
                out.put_count("users", users.len())?;
                for user in users {
                    out.put_string("user", &user.user)?;
                    out.put_u16(user.error as u16);
                    out.put_count("credentials", user.credentials.len())?;
                    for (mechanism, iterations) in &user.credentials {
                        out.put_string("mechanism", mechanism)?;
                        out.put_u32(*iterations);
                    }
                }
            }
            SecurityResponse::AlterUsers { results }
            | SecurityResponse::CreateAcls { results }
            | SecurityResponse::AlterQuotas { results } => write_topic_results(out, results)?,
            SecurityResponse::DescribeAcls {
                error,
                message,
                acls,
            } => {
                out.put_u16(*error as u16);
                out.put_string("message", message)?;
                write_acls(out, acls)?;
            }
            SecurityResponse::DeleteAcls { results } => {
                out.put_count("results", results.len())?;
                for result in results {
                    out.put_u16(result.error as u16);
                    out.put_string("message", &result.message)?;
                    write_acls(out, &result.removed)?;
                }
            }
            SecurityResponse::DescribeQuotas { error, quotas } => {
                out.put_u16(*error as u16);
                write_quotas(out, quotas)?;
            }
        }
        Ok(())
    }

    /// The errors the response carries, for metrics.
    pub fn errors(&self) -> Vec<ErrorCode> {
        let named = |results: &[TopicResult]| results.iter().map(|r| r.error).collect();
        match self {
            SecurityResponse::SaslHandshake { error, .. }
            | SecurityResponse::SaslAuthenticate { error, .. }
            | SecurityResponse::DescribeAcls { error, .. }
            | SecurityResponse::DescribeQuotas { error, .. } => vec![*error],
            SecurityResponse::DescribeUsers { error, users } => std::iter::once(*error)
                .chain(users.iter().map(|u| u.error))
                .collect(),
            SecurityResponse::AlterUsers { results }
            | SecurityResponse::CreateAcls { results }
            | SecurityResponse::AlterQuotas { results } => named(results),
            SecurityResponse::DeleteAcls { results } => results.iter().map(|r| r.error).collect(),
        }
    }
}

fn read_optional(r: &mut Reader, field: &'static str) -> Result<Option<String>, DecodeError> {
    match r.i8(field)? {
        0 => Ok(None),
        _ => r.string(field).map(Some),
    }
}

fn write_optional(
    out: &mut BytesMut,
    field: &'static str,
    value: &Option<String>,
) -> Result<(), EncodeError> {
    match value {
        None => out.put_i8(0),
        Some(value) => {
            out.put_i8(1);
            out.put_string(field, value)?;
        }
    }
    Ok(())
}

fn read_acl(r: &mut Reader) -> Result<Acl, DecodeError> {
    Ok(Acl {
        resource_type: r.i8("resource_type")?,
        name: r.string("name")?,
        pattern: r.i8("pattern")?,
        principal: r.string("principal")?,
        host: r.string("host")?,
        operation: r.i8("operation")?,
        permission: r.i8("permission")?,
    })
}

fn read_acls(r: &mut Reader) -> Result<Vec<Acl>, DecodeError> {
    let count = r.count("acls", 10)?;
    (0..count).map(|_| read_acl(r)).collect()
}

fn write_acls(out: &mut BytesMut, acls: &[Acl]) -> Result<(), EncodeError> {
    out.put_count("acls", acls.len())?;
    for acl in acls {
        out.put_i8(acl.resource_type);
        out.put_string("name", &acl.name)?;
        out.put_i8(acl.pattern);
        out.put_string("principal", &acl.principal)?;
        out.put_string("host", &acl.host)?;
        out.put_i8(acl.operation);
        out.put_i8(acl.permission);
    }
    Ok(())
}

fn read_filter(r: &mut Reader) -> Result<AclFilter, DecodeError> {
    Ok(AclFilter {
        resource_type: r.i8("resource_type")?,
        name: read_optional(r, "name")?,
        pattern: r.i8("pattern")?,
        principal: read_optional(r, "principal")?,
        host: read_optional(r, "host")?,
        operation: r.i8("operation")?,
        permission: r.i8("permission")?,
    })
}

fn write_filter(out: &mut BytesMut, filter: &AclFilter) -> Result<(), EncodeError> {
    out.put_i8(filter.resource_type);
    write_optional(out, "name", &filter.name)?;
    out.put_i8(filter.pattern);
    write_optional(out, "principal", &filter.principal)?;
    write_optional(out, "host", &filter.host)?;
    out.put_i8(filter.operation);
    out.put_i8(filter.permission);
    Ok(())
}

fn read_quota_name(r: &mut Reader, field: &'static str) -> Result<QuotaName, DecodeError> {
    match r.i8(field)? {
        0 => Ok(QuotaName::Absent),
        1 => Ok(QuotaName::Default),
        _ => r.string(field).map(QuotaName::Named),
    }
}

fn write_quota_name(
    out: &mut BytesMut,
    field: &'static str,
    name: &QuotaName,
) -> Result<(), EncodeError> {
    match name {
        QuotaName::Absent => out.put_i8(0),
        QuotaName::Default => out.put_i8(1),
        QuotaName::Named(name) => {
            out.put_i8(2);
            out.put_string(field, name)?;
        }
    }
    Ok(())
}

fn read_quotas(r: &mut Reader) -> Result<Vec<QuotaEntry>, DecodeError> {
    let count = r.count("quotas", 6)?;
    (0..count)
        .map(|_| {
            let user = read_quota_name(r, "user")?;
            let client_id = read_quota_name(r, "client_id")?;
            let count = r.count("values", 3)?;
            let values = (0..count)
                .map(|_| {
                    let key = r.string("key")?;
                    let value = match r.i8("present")? {
                        0 => None,
                        _ => Some(read_finite(r)?),
                    };
                    Ok((key, value))
                })
                .collect::<Result<_, DecodeError>>()?;
            Ok(QuotaEntry {
                user,
                client_id,
                values,
            })
        })
        .collect()
}

/// A quota value: an f64 as its 8 IEEE bytes, finite (NaN and infinities are refused).
fn read_finite(r: &mut Reader) -> Result<f64, DecodeError> {
    let value = f64::from_bits(r.i64("value")? as u64);
    if !value.is_finite() {
        return Err(DecodeError::BadValue {
            field: "value",
            value: value.to_string(),
        });
    }
    Ok(value)
}

fn write_quotas(out: &mut BytesMut, quotas: &[QuotaEntry]) -> Result<(), EncodeError> {
    out.put_count("quotas", quotas.len())?;
    for entry in quotas {
        write_quota_name(out, "user", &entry.user)?;
        write_quota_name(out, "client_id", &entry.client_id)?;
        out.put_count("values", entry.values.len())?;
        for (key, value) in &entry.values {
            out.put_string("key", key)?;
            match value {
                None => out.put_i8(0),
                Some(value) => {
                    out.put_i8(1);
                    out.put_i64(value.to_bits() as i64);
                }
            }
        }
    }
    Ok(())
}
