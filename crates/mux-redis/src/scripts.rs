//! The Lua scripts that write and remove records, atomically on the server. Each one
//! finds the stored version whichever layout holds the record (a string or a hash, see
//! [`crate::Layout`]): the version compares as text, fixed-width hex.
//!
//! The index entry is added only with a new record: the record and its entry are created
//! together and removed together by [`PURGE`], so an update (most writes) leaves the
//! index alone.

/// Lua setting `stored` to the version of the record at `KEYS[1]` (`false` when there is
/// none) and `head` to the start of its string (`''` when there is none, a table when it
/// is a hash). A string starts with its metadata's JSON, whose first member is the
/// version: `{"version":"<34 characters>"`, within 64 bytes.
macro_rules! stored_version {
    () => {
        r#"
local head = redis.pcall('GETRANGE', KEYS[1], 0, 63)
local stored = false
if type(head) == 'table' then
  stored = redis.call('HGET', KEYS[1], 'v')
elseif head ~= '' then
  stored = string.match(head, '^{"version":"([^"]*)"')
  if not stored then
    return redis.error_reply('ERR mux: ' .. KEYS[1] .. ' holds a string that is not a mux record')
  end
end
"#
    };
}

/// Compare-and-set in the string layout: write the record only if its version is higher
/// than the stored one. KEYS: record, index. ARGV: version, the record's string, key.
/// Returns nil when applied, else the stored version. `SET` replaces a hash as well.
pub(crate) const PUT_STRING: &str = concat!(
    stored_version!(),
    r"
if stored and stored >= ARGV[1] then return stored end
redis.call('SET', KEYS[1], ARGV[2])
if head == '' then redis.call('ZADD', KEYS[2], 0, ARGV[3]) end
return false
"
);

/// Compare-and-set in the hash layout. KEYS: record, index. ARGV: version, metadata
/// JSON, value, key. Returns as [`PUT_STRING`] does. `t` marks a hash in the earliest
/// layout, whose fields go; a string is removed before the hash is written.
pub(crate) const PUT_HASH: &str = r#"
local found = redis.pcall('HMGET', KEYS[1], 'v', 't')
local stored = false
if found.err then
  stored = string.match(redis.call('GETRANGE', KEYS[1], 0, 63), '^{"version":"([^"]*)"')
  if not stored then
    return redis.error_reply('ERR mux: ' .. KEYS[1] .. ' holds a string that is not a mux record')
  end
  if stored >= ARGV[1] then return stored end
  redis.call('DEL', KEYS[1])
else
  stored = found[1]
  if stored and stored >= ARGV[1] then return stored end
  if found[2] then redis.call('HDEL', KEYS[1], 't', 'ct', 'tags', 'crc') end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[2], 'val', ARGV[3])
if not found.err and not stored then redis.call('ZADD', KEYS[2], 0, ARGV[4]) end
return false
"#;

/// Remove the record if its stored version is at most ARGV[1]. KEYS: record, index.
/// ARGV: version, key. Returns 1 when removed, else 0.
pub(crate) const PURGE: &str = concat!(
    stored_version!(),
    r"
if stored and stored <= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"
);
