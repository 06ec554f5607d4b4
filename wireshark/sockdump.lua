-- sockdump.lua: Wireshark support for captures written by sockdump.
--
-- (a) A postdissector turns the `sockdump=1 key=value ...` packet comments of
--     `sockdump --format pcapng` captures into fields: sockdump.pid,
--     sockdump.comm, sockdump.path, ... usable in display filters and columns.
-- (b) A dissector for LINKTYPE_USER0 (`sockdump --link user`): it decodes the
--     sockdump header into the same fields and hands the message bytes on
--     (to HTTP when they look like HTTP, else to a dissector you choose).
--
-- Install: copy to ~/.local/lib/wireshark/plugins/ ("Personal Lua Plugins" in
-- `tshark -G folders`), or run
--     tshark -X lua_script:sockdump.lua -r capture.pcapng -Y 'sockdump.pid == 1234'
-- The formats are documented in docs/PCAPNG.md.

local sockdump = Proto("sockdump", "sockdump: unix socket message")

local directions = { [0] = "unknown", [1] = "inbound (from the server side)", [2] = "outbound (from the client side)" }

local f = {
    version = ProtoField.uint16("sockdump.version", "Header version"),
    header_len = ProtoField.uint16("sockdump.header_len", "Header length"),
    pid = ProtoField.uint32("sockdump.pid", "PID"),
    tid = ProtoField.uint32("sockdump.tid", "TID"),
    comm = ProtoField.string("sockdump.comm", "Command"),
    peer_pid = ProtoField.uint32("sockdump.peer_pid", "Peer PID", base.DEC, nil, nil,
        "SO_PEERCRED pid of the sending socket (0: unknown)"),
    reader_pid = ProtoField.uint32("sockdump.reader_pid", "Reader PID", base.DEC, nil, nil,
        "The process that read the message (its first byte)"),
    reader_tid = ProtoField.uint32("sockdump.reader_tid", "Reader TID"),
    reader_comm = ProtoField.string("sockdump.reader_comm", "Reader command"),
    readers = ProtoField.uint32("sockdump.readers", "Readers", base.DEC, nil, nil,
        "Threads that read parts of the message"),
    reader_seen = ProtoField.bool("sockdump.reader_seen", "Reader seen", base.NONE, nil, nil,
        "Whether a read of the message was seen (false: only SO_PEERCRED's pid is known)"),
    uid = ProtoField.uint32("sockdump.uid", "User ID", base.DEC, nil, nil, "The sender's (kernel) uid"),
    gid = ProtoField.uint32("sockdump.gid", "Group ID"),
    ppid = ProtoField.uint32("sockdump.ppid", "Parent PID"),
    pcomm = ProtoField.string("sockdump.pcomm", "Parent command"),
    cgroup = ProtoField.uint64("sockdump.cgroup", "Cgroup ID", base.DEC, nil, nil, "The sender's cgroup v2 id"),
    args = ProtoField.string("sockdump.args", "Command line", "The sender's arguments, shell-quoted"),
    container = ProtoField.string("sockdump.container", "Container", "The sender's container: its name, else its short id"),
    container_id = ProtoField.string("sockdump.container_id", "Container ID"),
    image = ProtoField.string("sockdump.image", "Container image"),
    pod = ProtoField.string("sockdump.pod", "Kubernetes pod"),
    namespace = ProtoField.string("sockdump.namespace", "Kubernetes namespace"),
    reader_uid = ProtoField.uint32("sockdump.reader_uid", "Reader user ID"),
    reader_args = ProtoField.string("sockdump.reader_args", "Reader command line"),
    reader_container = ProtoField.string("sockdump.reader_container", "Reader container"),
    reader_container_id = ProtoField.string("sockdump.reader_container_id", "Reader container ID"),
    path = ProtoField.string("sockdump.path", "Socket path", "The sender's own name (@ for abstract names; empty: unnamed)"),
    peer_path = ProtoField.string("sockdump.peer_path", "Peer path", "The peer's name, or the destination of an unconnected send"),
    type = ProtoField.string("sockdump.type", "Socket type"),
    ino = ProtoField.uint64("sockdump.ino", "Socket inode"),
    peer_ino = ProtoField.uint64("sockdump.peer_ino", "Peer socket inode"),
    len = ProtoField.uint32("sockdump.len", "Bytes sent"),
    captured = ProtoField.uint32("sockdump.captured", "Bytes captured"),
    truncated = ProtoField.bool("sockdump.truncated", "Truncated"),
    flags = ProtoField.uint16("sockdump.flags", "Flags", base.HEX),
    flag_trunc_size = ProtoField.bool("sockdump.flags.trunc_size", "Truncated by --seg-size", 16, nil, 0x0001),
    flag_trunc_segs = ProtoField.bool("sockdump.flags.trunc_segs", "Truncated by --segs-per-msg", 16, nil, 0x0002),
    flag_unreadable = ProtoField.bool("sockdump.flags.unreadable", "Bytes not readable", 16, nil, 0x0004),
    flag_peer_is_dest = ProtoField.bool("sockdump.flags.peer_is_dest", "Peer path is a sendto destination", 16, nil, 0x0008),
    direction = ProtoField.uint8("sockdump.direction", "Direction", base.DEC, directions),
    part = ProtoField.uint32("sockdump.part", "Part", base.DEC, nil, nil, "Which packet of a message split over several"),
    parts = ProtoField.uint32("sockdump.parts", "Parts"),
    synthetic = ProtoField.string("sockdump.synthetic", "Synthetic packet", "Not sent by any process (e.g. the TCP handshake)"),
}
sockdump.fields = f

sockdump.prefs.payload = Pref.string("Payload dissector", "auto",
    "Dissector for USER0 message bytes: auto (HTTP when they look like HTTP, else data), or a dissector name such as http, json, data")

local sock_types = { [1] = "stream", [2] = "dgram", [5] = "seqpacket" }
local flag_names = { trunc_size = 0x1, trunc_segs = 0x2, unreadable = 0x4, peer_is_dest = 0x8 }

-- Wireshark wants UTF-8 in string fields: other bytes are shown as \xNN.
local function printable(s)
    local out, i, n = {}, 1, #s
    while i <= n do
        local c = s:byte(i)
        local len = 0
        if c >= 0x20 and c < 0x7f then len = 1
        elseif c >= 0xc2 and c <= 0xdf then len = 2
        elseif c >= 0xe0 and c <= 0xef then len = 3
        elseif c >= 0xf0 and c <= 0xf4 then len = 4
        end
        local ok = len > 0 and i + len - 1 <= n
        for j = i + 1, i + len - 1 do
            if not ok then break end
            local d = s:byte(j)
            if d < 0x80 or d > 0xbf then ok = false end
        end
        if ok then
            out[#out + 1] = s:sub(i, i + len - 1)
            i = i + len
        else
            out[#out + 1] = string.format("\\x%02x", c)
            i = i + 1
        end
    end
    return table.concat(out)
end

-- A sun_path as sockdump shows it: @name for abstract names (NUL bytes in
-- them as @), the path otherwise, "" for unnamed sockets.
local function show_sun_path(raw)
    if #raw == 0 then return "" end
    if raw:byte(1) == 0 then
        return "@" .. printable((raw:sub(2):gsub("%z", "@")))
    end
    local nul = raw:find("\0", 1, true)
    if nul then raw = raw:sub(1, nul - 1) end
    return printable(raw)
end

local function unescape(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- A comment value naming a socket: "" unnamed, "@..." abstract, else a path.
local function show_comment_name(v)
    if v:sub(1, 1) == "@" then
        return "@" .. printable((unescape(v:sub(2)):gsub("%z", "@")))
    end
    return printable(unescape(v))
end

local function uint64_of(decimal)
    local n = UInt64(0)
    for d in decimal:gmatch("%d") do
        n = n * 10 + tonumber(d)
    end
    return n
end

local function add_flags(tree, bits, range)
    local ft = range and tree:add(f.flags, range) or tree:add(f.flags, bits)
    for _, field in ipairs({ f.flag_trunc_size, f.flag_trunc_segs, f.flag_unreadable, f.flag_peer_is_dest }) do
        if range then ft:add(field, range) else ft:add(field, bits) end
    end
end

-- Parses `sockdump=1 k=v ...`; nil for other comments and other versions.
local function parse_comment(text)
    if text:sub(1, 9) ~= "sockdump=" then return nil end
    local t = {}
    for token in text:gmatch("[^ ]+") do
        local k, v = token:match("^([^=]+)=(.*)$")
        if k then t[k] = v end
    end
    if t.sockdump ~= "1" then return nil end
    return t
end

-- "pid 812 curl to /run/docker.sock", "pid 790 dockerd on /run/docker.sock"
local function info_text(pid, comm, path, peer)
    if path ~= "" then
        return string.format("pid %s %s on %s", pid, comm, path)
    elseif peer ~= "" then
        return string.format("pid %s %s to %s", pid, comm, peer)
    end
    return string.format("pid %s %s", pid, comm)
end

---------------------------------------------------------------------------
-- (a) pcapng comments

local comment_proto = Proto("sockdump_comment", "sockdump metadata from the packet comment")
local f_frame_comment = Field.new("frame.comment")
local f_frame_direction = Field.new("frame.packet_flags_direction")

-- The frame the USER0 dissector last decoded: its comment repeats the header.
local user0_frame = nil

function comment_proto.dissector(tvb, pinfo, tree)
    if user0_frame == pinfo.number then return end
    local comments = { f_frame_comment() }
    for _, c in ipairs(comments) do
        local t = parse_comment(tostring(c.value))
        if t then
            local st = tree:add(sockdump, "sockdump (from the packet comment)")
            if t.synthetic then
                st:add(f.synthetic, t.synthetic):set_generated()
                return
            end
            local function num(field, key)
                if t[key] then st:add(field, tonumber(t[key])):set_generated() end
            end
            num(f.pid, "pid")
            num(f.tid, "tid")
            local comm = printable(unescape(t.comm or ""))
            st:add(f.comm, comm):set_generated()
            num(f.peer_pid, "peer_pid")
            if t.reader_pid then
                num(f.reader_pid, "reader_pid")
                num(f.reader_tid, "reader_tid")
                st:add(f.reader_comm, printable(unescape(t.reader_comm or ""))):set_generated()
                st:add(f.readers, tonumber(t.readers or "1")):set_generated()
                st:add(f.reader_seen, true):set_generated()
            elseif t.reader == "none" then
                st:add(f.reader_seen, false):set_generated()
            end
            num(f.reader_uid, "reader_uid")
            num(f.uid, "uid")
            num(f.gid, "gid")
            num(f.ppid, "ppid")
            local function text_field(field, key)
                if t[key] then st:add(field, printable(unescape(t[key]))):set_generated() end
            end
            text_field(f.pcomm, "pcomm")
            if t.cgroup then st:add(f.cgroup, uint64_of(t.cgroup)):set_generated() end
            text_field(f.args, "args")
            local function container(prefix)
                local id = t[prefix .. "container_id"]
                if not id then return nil end
                local name = printable(unescape(t[prefix .. "container"] or id:sub(1, 12)))
                st:add(f[prefix .. "container"], name):set_generated()
                st:add(f[prefix .. "container_id"], printable(unescape(id))):set_generated()
                return name
            end
            local in_container = container("")
            text_field(f.image, "image")
            text_field(f.pod, "pod")
            text_field(f.namespace, "namespace")
            text_field(f.reader_args, "reader_args")
            container("reader_")
            local path = show_comment_name(t.path or "")
            local peer = show_comment_name(t.peer_path or "")
            st:add(f.path, path):set_generated()
            st:add(f.peer_path, peer):set_generated()
            st:add(f.type, t.type or ""):set_generated()
            if t.ino then st:add(f.ino, uint64_of(t.ino)):set_generated() end
            if t.peer_ino then st:add(f.peer_ino, uint64_of(t.peer_ino)):set_generated() end
            num(f.len, "len")
            num(f.captured, "captured")
            local len, captured = tonumber(t.len or "0"), tonumber(t.captured or "0")
            st:add(f.truncated, captured < len):set_generated()
            local bits = 0
            for name in (t.flags or ""):gmatch("[^,]+") do
                bits = bits + (flag_names[name] or tonumber(name) or 0)
            end
            add_flags(st, bits)
            local dir = f_frame_direction()
            if dir then st:add(f.direction, dir.value):set_generated() end
            if t.part then
                local i, n = t.part:match("^(%d+)/(%d+)$")
                if i then
                    st:add(f.part, tonumber(i)):set_generated()
                    st:add(f.parts, tonumber(n)):set_generated()
                end
            end
            local text = info_text(t.pid or "?", comm, path, peer)
            if in_container then
                text = text .. " in container " .. in_container
            end
            if t.reader_pid then
                text = text .. string.format(", read by pid %s %s", t.reader_pid, printable(unescape(t.reader_comm or "")))
            end
            st:append_text(": " .. text)
            return
        end
    end
end

register_postdissector(comment_proto)

---------------------------------------------------------------------------
-- (b) LINKTYPE_USER0

local http = Dissector.get("http")
local data_dissector = Dissector.get("data")

-- HTTP messages start with a request or status line (or the HTTP/2 preface);
-- a message without one continues a body, which HTTP could not place
-- without TCP's reassembly.
local function looks_like_http(tvb)
    local head = tvb:raw(0, math.min(tvb:len(), 2048))
    local line = head:match("^([^\r\n]*)")
    return line:match("^%u[%u%-]* %S+ HTTP/%d") ~= nil
        or line:match("^HTTP/%d") ~= nil
        or line:match("^PRI %* HTTP/2") ~= nil
end

local function payload_dissector(tvb)
    local choice = sockdump.prefs.payload
    if choice == "" or choice == "auto" then
        if looks_like_http(tvb) then return http end
        return data_dissector
    end
    return Dissector.get(choice) or data_dissector
end

function sockdump.dissector(tvb, pinfo, tree)
    local n = tvb:len()
    if n < 72 or tvb(0, 8):string() ~= "sockdump" then return 0 end
    local version = tvb(8, 2):uint()
    local hlen = tvb(10, 2):uint()
    local pl, ppl = tvb(17, 1):uint(), tvb(18, 1):uint()
    if version ~= 1 or hlen < 72 + pl + ppl or hlen > n then return 0 end
    user0_frame = pinfo.number
    pinfo.cols.protocol = "sockdump"
    local st = tree:add(sockdump, tvb(0, hlen), "sockdump")
    st:add(f.version, tvb(8, 2))
    st:add(f.header_len, tvb(10, 2))
    local raw_type = tvb(12, 2):uint()
    st:add(f.type, tvb(12, 2), sock_types[raw_type] or tostring(raw_type))
    add_flags(st, tvb(14, 2):uint(), tvb(14, 2))
    st:add(f.direction, tvb(16, 1))
    st:add(f.pid, tvb(20, 4))
    st:add(f.tid, tvb(24, 4))
    st:add(f.peer_pid, tvb(28, 4))
    st:add(f.len, tvb(32, 4))
    st:add(f.captured, tvb(36, 4))
    local len, captured = tvb(32, 4):uint(), tvb(36, 4):uint()
    st:add(f.truncated, captured < len):set_generated()
    st:add(f.ino, tvb(40, 8))
    st:add(f.peer_ino, tvb(48, 8))
    local comm_raw = tvb(56, 16):raw()
    local nul = comm_raw:find("\0", 1, true)
    local comm = printable(nul and comm_raw:sub(1, nul - 1) or comm_raw)
    st:add(f.comm, tvb(56, 16), comm)
    local path, peer = "", ""
    if pl > 0 then
        path = show_sun_path(tvb(72, pl):raw())
        st:add(f.path, tvb(72, pl), path)
    else
        st:add(f.path, ""):set_generated()
    end
    if ppl > 0 then
        peer = show_sun_path(tvb(72 + pl, ppl):raw())
        st:add(f.peer_path, tvb(72 + pl, ppl), peer)
    else
        st:add(f.peer_path, ""):set_generated()
    end
    local summary = info_text(tostring(tvb(20, 4):uint()), comm, path, peer)
    st:append_text(": " .. summary)
    pinfo.cols.info = summary .. string.format(", %d bytes", len)
    if hlen < n then
        local payload = tvb(hlen):tvb()
        payload_dissector(payload):call(payload, pinfo, tree)
    end
    return n
end

DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, sockdump)
