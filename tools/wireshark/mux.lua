-- Wireshark dissector for mux v1 (spec/mux-v1.md).
--
--   wireshark -X lua_script:tools/wireshark/mux.lua capture.pcap
--   tshark -X lua_script:tools/wireshark/mux.lua -r capture.pcap -Y mux
--
-- Registered on TCP port 7878 (mux-server's default) and as a heuristic on
-- the connection preface (0x89 'M' 'U' 'X' CR LF), so mux on any port is
-- found from its first segment. Shows the preface and its version, each
-- frame's header (length, type, flags, stream), every frame type's fields
-- (§5), metadata as name/value pairs, and the patterns' reserved routes
-- (spec/patterns.md §7) in the Info column. Frames that span TCP segments
-- are reassembled; malformed frames are marked as expert errors, never
-- thrown.

local mux = Proto("mux", "mux stream multiplexing")

local FRAME_TYPES = {
  [0] = "DATA", [1] = "OPEN", [2] = "RESET", [3] = "SETTINGS",
  [4] = "PING", [5] = "GOAWAY", [6] = "WINDOW_UPDATE", [7] = "PUSH",
}
local ERROR_CODES = {
  [0x0] = "NO_ERROR", [0x1] = "PROTOCOL_ERROR", [0x2] = "INTERNAL_ERROR",
  [0x3] = "FLOW_CONTROL_ERROR", [0x4] = "SETTINGS_TIMEOUT", [0x5] = "STREAM_CLOSED",
  [0x6] = "FRAME_SIZE_ERROR", [0x7] = "REFUSED_STREAM", [0x8] = "CANCEL",
  [0x9] = "ENHANCE_YOUR_CALM", [0xa] = "METADATA_TOO_LARGE",
  [0xb] = "UNSUPPORTED_VERSION", [0xc] = "IDLE_TIMEOUT", [0xd] = "INADEQUATE_SECURITY",
}
local SETTINGS = {
  [0x1] = "MAX_FRAME_SIZE", [0x2] = "MAX_CONCURRENT_STREAMS",
  [0x3] = "INITIAL_STREAM_WINDOW", [0x4] = "MAX_METADATA_SIZE",
}
local HEADER_LEN = 9
local PREFACE_LEN = 8
local MAGIC = "\x89MUX\r\n"

local f = {
  preface = ProtoField.bytes("mux.preface", "Preface"),
  version = ProtoField.uint16("mux.preface.version", "Version"),
  length = ProtoField.uint24("mux.length", "Length"),
  type = ProtoField.uint8("mux.type", "Type", base.HEX, FRAME_TYPES),
  flags = ProtoField.uint8("mux.flags", "Flags", base.HEX),
  end_stream = ProtoField.bool("mux.flags.end_stream", "END_STREAM", 8, nil, 0x1),
  end_message = ProtoField.bool("mux.flags.end_message", "END_MESSAGE", 8, nil, 0x2),
  ack = ProtoField.bool("mux.flags.ack", "ACK", 8, nil, 0x1),
  reserved = ProtoField.uint32("mux.r", "Reserved bit", base.DEC, nil, 0x80000000),
  stream = ProtoField.uint32("mux.stream_id", "Stream ID", base.DEC, nil, 0x7fffffff),
  data = ProtoField.bytes("mux.data", "Data"),
  entry = ProtoField.none("mux.metadata", "Metadata entry"),
  name = ProtoField.string("mux.metadata.name", "Name"),
  value = ProtoField.bytes("mux.metadata.value", "Value"),
  value_text = ProtoField.string("mux.metadata.value_text", "Value (text)"),
  route = ProtoField.string("mux.route", "Route"),
  error_code = ProtoField.uint32("mux.error_code", "Error code", base.HEX, ERROR_CODES),
  setting = ProtoField.uint16("mux.settings.id", "Setting", base.HEX, SETTINGS),
  setting_value = ProtoField.uint32("mux.settings.value", "Value"),
  ping = ProtoField.bytes("mux.ping.data", "Opaque data"),
  last_stream = ProtoField.uint32("mux.goaway.last_stream", "Last stream ID", base.DEC, nil, 0x7fffffff),
  debug = ProtoField.string("mux.goaway.debug", "Debug data"),
  increment = ProtoField.uint32("mux.window_update.increment", "Window size increment", base.DEC, nil, 0x7fffffff),
  associated = ProtoField.uint32("mux.push.associated", "Associated stream ID", base.DEC, nil, 0x7fffffff),
  payload = ProtoField.bytes("mux.payload", "Payload (unknown type)"),
}
mux.fields = {}
for _, field in pairs(f) do table.insert(mux.fields, field) end

local malformed = ProtoExpert.new("mux.malformed", "Malformed mux frame",
  expert.group.MALFORMED, expert.severity.ERROR)
local reserved_set = ProtoExpert.new("mux.reserved_set", "Reserved bit set (PROTOCOL_ERROR)",
  expert.group.PROTOCOL, expert.severity.ERROR)
mux.experts = { malformed, reserved_set }

local function is_printable(range)
  local text = range:string()
  return #text == range:len() and not text:find("[^\32-\126]")
end

-- A metadata block (§5.2.1): entries of name (length 8) and value (length 16).
-- Returns the `:route` value, if any.
local function metadata(tvb, tree, offset, finish)
  local route
  while offset < finish do
    if finish - offset < 1 then break end
    local name_len = tvb(offset, 1):uint()
    if name_len == 0 or offset + 1 + name_len + 2 > finish then
      tree:add_proto_expert_info(malformed, "a metadata block that ends inside an entry, or an empty name")
      return route
    end
    local name = tvb(offset + 1, name_len)
    local value_len = tvb(offset + 1 + name_len, 2):uint()
    local value_at = offset + 1 + name_len + 2
    if value_at + value_len > finish then
      tree:add_proto_expert_info(malformed, "a metadata value runs past the block")
      return route
    end
    local entry = tree:add(f.entry, tvb(offset, 1 + name_len + 2 + value_len))
    entry:add(f.name, name)
    local value = tvb(value_at, value_len)
    if value_len > 0 then
      entry:add(f.value, value)
      if is_printable(value) then entry:add(f.value_text, value) end
    end
    local shown = value_len > 0 and is_printable(value) and value:string() or ("<" .. value_len .. " bytes>")
    entry:set_text(name:string() .. ": " .. shown)
    if name:string() == ":route" and value_len > 0 then
      route = value:string()
      tree:add(f.route, value):set_generated()
    end
    offset = value_at + value_len
  end
  return route
end

-- Whether `tvb` holds a preface at `offset`.
local function preface_at(tvb, offset)
  return tvb:len() - offset >= #MAGIC and tvb(offset, #MAGIC):raw() == MAGIC
end


-- The length of the frame at `offset` (header and payload).
local function frame_length(tvb, pinfo, offset)
  return HEADER_LEN + tvb(offset, 3):uint()
end

local function dissect_preface(tvb, pinfo, tree)
  local item = tree:add(mux, tvb(0, PREFACE_LEN), "mux preface")
  item:add(f.preface, tvb(0, 6))
  item:add(f.version, tvb(6, 2))
  pinfo.cols.info:append("Preface v" .. tvb(6, 2):uint() .. " ")
end

local function dissect_frame(tvb, pinfo, tree)
  local length = tvb(0, 3):uint()
  local ftype = tvb(3, 1):uint()
  local flags = tvb(4, 1):uint()
  local stream = tvb(5, 4):bitfield(1, 31)
  local name = FRAME_TYPES[ftype] or string.format("UNKNOWN(0x%02x)", ftype)
  local item = tree:add(mux, tvb(0, HEADER_LEN + length), "mux " .. name .. ", stream " .. stream)
  item:add(f.length, tvb(0, 3))
  item:add(f.type, tvb(3, 1))
  local flags_item = item:add(f.flags, tvb(4, 1))
  if ftype == 0 then
    flags_item:add(f.end_stream, tvb(4, 1))
    flags_item:add(f.end_message, tvb(4, 1))
  elseif ftype == 1 or ftype == 7 then
    flags_item:add(f.end_stream, tvb(4, 1))
  elseif ftype == 3 or ftype == 4 then
    flags_item:add(f.ack, tvb(4, 1))
  end
  local r = item:add(f.reserved, tvb(5, 4))
  if tvb(5, 1):bitfield(0, 1) == 1 then r:add_proto_expert_info(reserved_set) end
  item:add(f.stream, tvb(5, 4))
  local info = name .. " s=" .. stream
  local payload = HEADER_LEN
  local function need(exact, what)
    if length ~= exact then
      item:add_proto_expert_info(malformed, what .. " must have length " .. exact .. ", not " .. length)
      return false
    end
    return true
  end
  if ftype == 0 then
    if length > 0 then item:add(f.data, tvb(payload, length)) end
    if bit.band(flags, 0x2) ~= 0 then info = info .. " END_MESSAGE" end
    if bit.band(flags, 0x1) ~= 0 then info = info .. " END_STREAM" end
    info = info .. " len=" .. length
  elseif ftype == 1 then
    local route = metadata(tvb, item, payload, payload + length)
    if route then info = info .. " " .. route end
    if bit.band(flags, 0x1) ~= 0 then info = info .. " END_STREAM" end
  elseif ftype == 2 then
    if need(4, "RESET") then
      item:add(f.error_code, tvb(payload, 4))
      info = info .. " " .. (ERROR_CODES[tvb(payload, 4):uint()] or "unknown code")
    end
  elseif ftype == 3 then
    if length % 6 ~= 0 or (bit.band(flags, 0x1) ~= 0 and length ~= 0) then
      item:add_proto_expert_info(malformed, "SETTINGS length must be a multiple of 6 (0 with ACK)")
    else
      for at = payload, payload + length - 6, 6 do
        local entry = item:add(f.setting, tvb(at, 2))
        entry:add(f.setting_value, tvb(at + 2, 4))
        entry:append_text(" = " .. tvb(at + 2, 4):uint())
      end
      if bit.band(flags, 0x1) ~= 0 then info = info .. " ACK" end
    end
  elseif ftype == 4 then
    if need(8, "PING") then item:add(f.ping, tvb(payload, 8)) end
    if bit.band(flags, 0x1) ~= 0 then info = info .. " ACK" end
  elseif ftype == 5 then
    if length < 8 then
      item:add_proto_expert_info(malformed, "GOAWAY must have length 8 or more")
    else
      item:add(f.last_stream, tvb(payload, 4))
      item:add(f.error_code, tvb(payload + 4, 4))
      if length > 8 then item:add(f.debug, tvb(payload + 8, length - 8)) end
      info = info .. " last=" .. tvb(payload, 4):bitfield(1, 31) .. " "
        .. (ERROR_CODES[tvb(payload + 4, 4):uint()] or "unknown code")
    end
  elseif ftype == 6 then
    if need(4, "WINDOW_UPDATE") then
      item:add(f.increment, tvb(payload, 4))
      info = info .. " +" .. tvb(payload, 4):bitfield(1, 31)
    end
  elseif ftype == 7 then
    if length < 4 then
      item:add_proto_expert_info(malformed, "PUSH must have length 4 or more")
    else
      item:add(f.associated, tvb(payload, 4))
      local route = metadata(tvb, item, payload + 4, payload + length)
      if route then info = info .. " " .. route end
      info = info .. " for=" .. tvb(payload, 4):bitfield(1, 31)
    end
  elseif length > 0 then
    item:add(f.payload, tvb(payload, length))
  end
  pinfo.cols.info:append(info .. " ")
  return HEADER_LEN + length
end

function mux.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "MUX"
  pinfo.cols.info:clear()
  local offset, length = 0, tvb:len()
  -- A direction starts with the 8-byte preface; frames follow.
  if preface_at(tvb, 0) and length >= PREFACE_LEN then
    dissect_preface(tvb, pinfo, tree)
    offset = PREFACE_LEN
  end
  while offset < length do
    local left = length - offset
    local need = left < HEADER_LEN and HEADER_LEN or frame_length(tvb, pinfo, offset)
    if left < need then
      -- Cut across segments: TCP reassembles, and calls again from here.
      pinfo.desegment_offset = offset
      pinfo.desegment_len = need - left
      return length
    end
    dissect_frame(tvb(offset, need):tvb(), pinfo, tree)
    offset = offset + need
  end
  return offset
end

-- The heuristic: a segment that starts with the preface starts a mux
-- connection (the server answers with its own); from then on the whole
-- conversation is mux.
local function heuristic(tvb, pinfo, tree)
  if tvb:len() < #MAGIC or tvb(0, #MAGIC):raw() ~= MAGIC then return false end
  pinfo.conversation = mux
  mux.dissector(tvb, pinfo, tree)
  return true
end

DissectorTable.get("tcp.port"):add(7878, mux)
mux:register_heuristic("tcp", heuristic)
