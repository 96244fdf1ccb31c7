// H.264 live view player of the dashboard (src/dashboard.rs inlines it into the page).
//
// Plays GET /stream/h264 (a WebSocket carrying fragmented MP4: the init segment, then one
// moof+mdat fragment per frame) in a <video> element through Media Source Extensions, kept at
// the live edge: the buffer behind the playhead is trimmed (at a keyframe, so that nothing
// the playhead still needs is removed with it), and when playback falls more than
// MAX_LAG_S behind the newest frame (or the server skipped the client to a later keyframe,
// leaving a gap) the playhead jumps to the newest frame. A closed socket (the stream worker
// restarted), a decode error or a decoder that cannot keep up starts again with a new
// MediaSource after RETRY_MS, so the buffer never grows and playback never drifts behind.
//
//   if (H264Player.supported()) {
//     const p = new H264Player(videoElement, { bitrateKbps: 2500, onState: s => ... });
//     p.start();            // p.stop() to end
//   }
//
// The token of the page URL (?token=...) is passed on, like the dashboard's other requests.
(function () {
  'use strict';

  const CODEC = 'avc1.42E01F'; // constrained baseline, level 3.1
  const MAX_LAG_S = 0.5;       // jump to the live edge beyond this
  const KEEP_S = 3;            // buffer kept behind the playhead
  const MAX_PENDING = 30;      // appends waiting (1 s at 30 fps): reconnect rather than lag
  const RETRY_MS = 1000;
  const STUCK_MS = 3000;       // appends that add nothing this long: start again (see appended)

  function boxType(u8) {
    return String.fromCharCode(u8[4], u8[5], u8[6], u8[7]);
  }

  const u32 = (u8, i) => u8[i] * 0x1000000 + (u8[i + 1] << 16) + (u8[i + 2] << 8) + u8[i + 3];

  // Offset of the payload of the box at `path` (e.g. ['moof', 'traf', 'tfdt']), or -1.
  function find(u8, path, start = 0, end = u8.length) {
    for (let i = start; i + 8 <= end;) {
      const size = u32(u8, i);
      if (size < 8 || i + size > end) return -1;
      if (String.fromCharCode(u8[i + 4], u8[i + 5], u8[i + 6], u8[i + 7]) === path[0]) {
        return path.length === 1 ? i + 8 : find(u8, path.slice(1), i + 8, i + size);
      }
      i += size;
    }
    return -1;
  }

  // The track's timescale (units per second) from the init segment's mdhd.
  function timescaleOf(init) {
    const p = find(init, ['moov', 'trak', 'mdia', 'mdhd']);
    if (p < 0) return 90000;
    return u32(init, p + (init[p] === 1 ? 20 : 12)) || 90000;
  }

  // Decode time (track units) of a fragment's first sample and whether it is a keyframe.
  function fragmentInfo(u8) {
    const d = find(u8, ['moof', 'traf', 'tfdt']), r = find(u8, ['moof', 'traf', 'trun']);
    if (d < 0 || r < 0) return null;
    const time = u8[d] === 1 ? u32(u8, d + 4) * 0x100000000 + u32(u8, d + 8) : u32(u8, d + 4);
    const flags = (u8[r + 1] << 16) | (u8[r + 2] << 8) | u8[r + 3];
    let q = r + 8;                 // after version/flags and sample_count
    if (flags & 0x1) q += 4;       // data_offset
    let sampleFlags = null;
    if (flags & 0x4) { sampleFlags = u32(u8, q); q += 4; }  // first_sample_flags
    if (flags & 0x100) q += 4;     // sample_duration
    if (flags & 0x200) q += 4;     // sample_size
    if (sampleFlags === null && (flags & 0x400)) sampleFlags = u32(u8, q);
    // sample_is_non_sync_sample; without flags, assume the worst (not a keyframe).
    return { time, key: sampleFlags !== null && (sampleFlags & 0x10000) === 0 };
  }

  // avc1.PPCCLL from the avcC box of an init segment.
  function codecOf(init) {
    for (let i = 4; i + 8 < init.length; i++) {
      if (init[i] === 0x61 && init[i + 1] === 0x76 && init[i + 2] === 0x63 && init[i + 3] === 0x43) {
        const hex = b => b.toString(16).padStart(2, '0').toUpperCase();
        return 'avc1.' + hex(init[i + 5]) + hex(init[i + 6]) + hex(init[i + 7]);
      }
    }
    return CODEC;
  }

  class H264Player {
    static supported(codec = CODEC) {
      return !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="' + codec + '"');
    }

    constructor(video, opts = {}) {
      this.video = video;
      this.bitrateKbps = opts.bitrateKbps;
      this.baseUrl = opts.url; // default: this page's host
      this.onState = opts.onState || (() => {});
      this.stopped = true;
    }

    url() {
      const q = new URLSearchParams();
      if (this.bitrateKbps) q.set('bitrate_kbps', String(this.bitrateKbps));
      const token = new URLSearchParams(location.search).get('token');
      if (token) q.set('token', token);
      const qs = q.toString();
      if (this.baseUrl) return this.baseUrl + (qs ? (this.baseUrl.includes('?') ? '&' : '?') + qs : '');
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/stream/h264' + (qs ? '?' + qs : '');
    }

    start() {
      this.stopped = false;
      this.video.muted = true;
      this.video.playsInline = true;
      // A decode error ends the element's playback for good: start again with a new source.
      this.onError = () => { if (this.ms) this.reconnect('video error ' + (this.video.error ? this.video.error.code : '?')); };
      this.video.addEventListener('error', this.onError);
      this.open();
    }

    stop() {
      this.stopped = true;
      if (this.onError) { this.video.removeEventListener('error', this.onError); this.onError = null; }
      this.close();
      clearTimeout(this.retry);
      this.onState('stopped');
    }

    close() {
      if (this.ws) { this.ws.onclose = null; this.ws.onmessage = null; this.ws.close(); this.ws = null; }
      if (this.objectUrl) { URL.revokeObjectURL(this.objectUrl); this.objectUrl = null; }
      this.ms = null;
      this.sb = null;
      this.pending = [];
    }

    reconnect(why) {
      this.close();
      if (this.stopped) return;
      this.reconnects = (this.reconnects || 0) + 1;
      this.onState('reconnecting: ' + why);
      clearTimeout(this.retry);
      this.retry = setTimeout(() => { if (!this.stopped) this.open(); }, RETRY_MS);
    }

    open() {
      this.pending = [];
      this.keyTimes = []; // seconds, ascending: where the buffer may be cut
      this.lastEnd = 0;
      this.stuckSince = null;
      this.appending = false;
      const ms = new MediaSource();
      this.ms = ms;
      this.objectUrl = URL.createObjectURL(ms);
      this.video.src = this.objectUrl;
      ms.addEventListener('sourceopen', () => {
        if (this.ms !== ms) return;
        let ws;
        try {
          ws = new WebSocket(this.url());
        } catch (e) {
          // No WebSocket at all (blocked or too old a browser): H.264 cannot work here.
          this.stop();
          this.onState('unsupported: cannot open a WebSocket (' + (e && e.message || e) + ')');
          return;
        }
        ws.binaryType = 'arraybuffer';
        this.ws = ws;
        ws.onopen = () => this.onState('connected');
        ws.onmessage = ev => this.receive(new Uint8Array(ev.data));
        ws.onclose = ev => this.reconnect('closed (' + ev.code + ')');
      }, { once: true });
    }

    receive(u8) {
      if (!this.ms || this.ms.readyState !== 'open') return;
      if (boxType(u8) === 'ftyp') {
        this.timescale = timescaleOf(u8);
      } else if (boxType(u8) === 'moof') {
        const f = fragmentInfo(u8);
        if (f && f.key) this.keyTimes.push(f.time / (this.timescale || 90000));
      }
      if (!this.sb) {
        if (boxType(u8) !== 'ftyp') return;
        const type = 'video/mp4; codecs="' + codecOf(u8) + '"';
        if (!MediaSource.isTypeSupported(type)) { this.stop(); this.onState('unsupported: ' + type); return; }
        const sb = this.ms.addSourceBuffer(type);
        this.sb = sb;
        sb.mode = 'segments';
        // Events of a SourceBuffer left behind by a reconnect concern nobody.
        sb.addEventListener('updateend', () => { if (this.sb === sb) { this.appended(); this.pump(); } });
        sb.addEventListener('error', () => { if (this.sb === sb) this.reconnect('source buffer error'); });
      }
      this.pending.push(u8);
      if (this.pending.length > MAX_PENDING) { this.reconnect('decoder behind'); return; }
      this.pump();
    }

    pump() {
      const sb = this.sb;
      if (!sb || sb.updating) return;
      this.keepLive();
      if (sb.updating) return; // keepLive started a remove()
      const next = this.pending.shift();
      if (!next) return;
      try {
        sb.appendBuffer(next);
        this.appending = true;
      } catch (e) {
        // QuotaExceededError and friends: start again at the live edge.
        this.reconnect(String(e && e.name || e));
      }
    }

    // After a gap in the timeline (an outage, a skip to a later keyframe) the browser drops
    // frames until the next keyframe. The server sends one every h264_keyframe_sec; when that
    // is long, a reconnect is quicker: a joining client gets a keyframe within about a second.
    appended() {
      if (!this.appending) return; // a remove() ended
      this.appending = false;
      const b = this.sb.buffered, end = b.length ? b.end(b.length - 1) : 0;
      if (end > (this.lastEnd || 0)) {
        this.lastEnd = end;
        this.stuckSince = null;
        return;
      }
      const now = performance.now();
      if (this.stuckSince == null) this.stuckSince = now;
      else if (now - this.stuckSince > STUCK_MS) this.reconnect('waiting for a keyframe');
    }

    keepLive() {
      const v = this.video, b = this.sb.buffered;
      if (!b.length) return;
      const end = b.end(b.length - 1), start = b.start(b.length - 1);
      if (v.currentTime < start || end - v.currentTime > MAX_LAG_S) {
        v.currentTime = Math.max(start, end - 0.05);
      }
      if (v.paused) v.play().catch(() => {});
      // Cut at the newest keyframe at least KEEP_S behind the playhead: cutting inside a group
      // of pictures would also remove the frames after the cut up to the next keyframe.
      const limit = v.currentTime - KEEP_S, keys = this.keyTimes;
      while (keys.length > 1 && keys[1] <= limit) keys.shift();
      if (keys.length && keys[0] <= limit && b.start(0) < keys[0] - 0.1) {
        this.sb.remove(0, keys[0]);
      }
    }
  }

  window.H264Player = H264Player;
})();
