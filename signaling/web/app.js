// PeerCall's browser page: joins a room on the signaling server that served it and calls the
// other peer (a desktop or another browser) with the same messages the desktop engine uses.
// Wire protocol: docs/signaling-protocol.md (join, relays with seq/acks, iceServers on join).
// The link is https://HOST:PORT/#room=NAME&secret=SECRET; optional flags: `relay` (media
// only through the TURN relay the server hands out, hiding your address) and `loopback`
// (only 127.0.0.1 candidates, for two ends on one machine, like `peercall call --loopback`).
import { sdpFingerprint, shortAuthString } from "./sas.js";

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9._~-]{1,64}$/;
const MAX_SECRET = 256;
const MAX_CHAT = 16 * 1024; // the desktop's limit (one SCTP message)
// Browser peer ids start with "web-" so two browsers can break an offer collision by id.
const WEB_PREFIX = "web-";
// The first of two to join offers at once; the one already waiting gives a newcomer this
// long to send its own offer (a desktop caller does) before offering itself (for a desktop
// that answers). A collision that still happens is resolved by rolling back (RFC 8829 §4.1.8.2).
const OFFER_GRACE_MS = 1500;
const CONNECTED_TEXT = "Connected. Read the security code to each other: it must match.";

const params = new URLSearchParams(location.hash.slice(1));
const options = { relay: params.has("relay"), loopback: params.has("loopback") };
const me = WEB_PREFIX + randomId(16);

let ws = null;
let pc = null;
let chat = null;
let localStream = null;
let mediaReady = null;
let iceServers = [];
let other = null; // the other peer's id while it is in the room
let sendSeq = 0;
const lastSeen = new Map(); // peer id -> highest relay seq delivered to us (drops re-sends)
let ackTimer = null;
let heartbeat = null;
let offerTimer = null;
let pendingCandidates = [];
let remoteSdp = ""; // the peer's description exactly as it sent it
let gotOffer = false;
let connected = false;
let ended = false;
let statsTimer = null;
let certificate = null; // RTCCertificate shared by every peer connection of the call
let standby = null; // the previous connection while a renegotiated one comes up
const remoteStream = new MediaStream();
let joined = false; // joined at least once: a dropped link then re-joins (resumes the seat)
let session = null; // the server's token for resuming our seat
let unacked = []; // relays the other peer has not acknowledged yet: [{seq, text}]
let retries = 0;
let gaveUp = false; // we closed the signaling link after an error already shown
let work = Promise.resolve(); // frames are handled one at a time, in order

function randomId(n) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => alphabet[b & 63]).join("");
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setState(state) {
  document.body.dataset.state = state;
}

function setBadge(text, kind) {
  const badge = $("badge");
  badge.textContent = text;
  badge.className = `badge ${kind || ""}`;
}

// --- start ---------------------------------------------------------------------------------

function validate(room, secret) {
  if (!room) return "The link names no room: it should end like #room=kitchen&secret=…";
  if (!ROOM_RE.test(room)) {
    return `Room name "${room}" must be 1-64 characters of A-Z a-z 0-9 . _ ~ -`;
  }
  if (!secret) return "Enter the room secret (the link should carry it as &secret=…).";
  if (secret.length > MAX_SECRET) return `The room secret is longer than ${MAX_SECRET} characters.`;
  return null;
}

function start(room, secret) {
  const problem = validate(room, secret);
  if (problem) {
    showError(problem);
    setStatus("");
    $("join-form").hidden = false;
    return;
  }
  clearError();
  $("join-form").hidden = true;
  $("call").hidden = false;
  setState("joining");
  // Camera and signaling start together: neither waits for the other.
  mediaReady = getMedia();
  connect(room, secret);
}

async function getMedia() {
  if (!navigator.mediaDevices || !window.isSecureContext) {
    showError(
      "This page needs https:// (or http://localhost) to use the camera and microphone: " +
        "ask for an https link. You can still listen and watch.",
    );
    return;
  }
  try {
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: 640, height: 480 },
    });
  } catch (err) {
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      try {
        localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
        showError("No camera found: the call is audio only from your side.");
      } catch {
        showError("No microphone or camera found: you can listen and watch, not speak.");
      }
    } else if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      showError(
        "Camera and microphone access was denied: allow them for this site " +
          "(the icon in the address bar) and reload. Joining without sending audio or video.",
      );
    } else if (err.name === "NotReadableError") {
      showError("The camera or microphone is in use by another program: close it and reload.");
    } else {
      showError(`Cannot open the camera or microphone: ${err.message || err.name}`);
    }
  }
  if (localStream) $("local-video").srcObject = localStream;
  performance.mark("peercall-media"); // read by bench/bench_browser.py
}

// --- signaling -----------------------------------------------------------------------------

function serverUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
}

function connect(room, secret) {
  const url = serverUrl();
  setStatus(`Connecting to ${url}…`);
  let opened = false;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    showError(`Cannot reach the signaling server at ${url}: ${err.message}`);
    return;
  }
  ws.onopen = () => {
    opened = true;
    const join = { type: "join", room, secret, peer: me, name: "browser" };
    if (session) join.session = session;
    send(join);
  };
  ws.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    enqueue(() => onFrame(frame, room));
  };
  ws.onclose = () => {
    clearInterval(heartbeat);
    if (gaveUp || ended) return;
    if (joined) {
      // Media goes on peer to peer; the seat waits for us (resume grace), or after a server
      // restart we join afresh and re-send what was not acknowledged.
      retries += 1;
      setStatus("Lost the signaling server; reconnecting…");
      setTimeout(() => connect(room, secret), Math.min(500 * 2 ** (retries - 1), 8000));
      return;
    }
    if (!opened) {
      showError(
        `Cannot reach the signaling server at ${url}: check that it is running and that ` +
          "the address is right.",
      );
      setState("failed");
      setStatus("");
    } else if (!ended && !connected) {
      showError("Lost the connection to the signaling server before the call connected.");
      setState("failed");
    }
  };
}

function enqueue(task) {
  work = work.then(task).catch((err) => showError(`Call error: ${err.message || err}`));
}

function send(body) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ v: 1, ...body }));
}

function relay(data) {
  sendSeq += 1;
  const text = JSON.stringify({ v: 1, type: "relay", seq: sendSeq, data: { v: 1, ...data } });
  unacked.push({ seq: sendSeq, text }); // kept until the peer acks it (docs: Delivery)
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
}

function scheduleAck(from, seq) {
  // Cumulative acks, coalesced like the desktop client's (one per burst).
  clearTimeout(ackTimer);
  ackTimer = setTimeout(() => send({ type: "ack", from, seq }), 50);
}

const ERRORS = {
  "wrong-secret": (room) => `Wrong secret for room "${room}": check the link you were sent.`,
  "room-full": (room) => `Room "${room}" is full: two people are already in it.`,
};

async function onFrame(frame, room) {
  switch (frame.type) {
    case "joined": {
      const again = joined;
      joined = true;
      session = frame.session;
      retries = 0;
      heartbeat = setInterval(() => send({ type: "ping" }), (frame.heartbeat || 20) * 1000);
      unacked = unacked.filter((u) => u.seq > frame.ack);
      if (again) {
        for (const u of unacked) ws.send(u.text); // receivers drop what they already have
        setStatus(connected ? CONNECTED_TEXT : "Reconnected to the signaling server.");
        return;
      }
      performance.mark("peercall-joined");
      iceServers = frame.iceServers || [];
      setState("waiting");
      if (frame.peers.some((p) => p.present)) {
        other = frame.peers[0].peer;
        // Relays queued for us arrive right after "joined"; a pong after them says whether
        // an offer was among them.
        send({ type: "ping" });
        setStatus("Joining the call…");
      } else {
        setStatus(`Waiting for the other person to join room "${room}"…`);
      }
      return;
    }
    case "pong":
      if (other && !pc && !gotOffer && !offerTimer) await makeOffer();
      return;
    case "peer-joined":
      other = frame.peer;
      if (connected) {
        setStatus(CONNECTED_TEXT); // its link is back
      } else if (!pc && !gotOffer) {
        setStatus("The other person joined; starting the call…");
        clearTimeout(offerTimer);
        offerTimer = setTimeout(() => {
          offerTimer = null;
          enqueue(makeOffer);
        }, OFFER_GRACE_MS);
      }
      return;
    case "peer-left":
      if (frame.reason === "disconnected") {
        setStatus("The other person's link dropped; waiting for them to come back…");
      } else if (connected || pc) {
        endCall("The other person left the call.");
      } else {
        other = null;
        setStatus(`Waiting for the other person to join room "${room}"…`);
      }
      return;
    case "relay": {
      if (frame.seq <= (lastSeen.get(frame.from) || 0)) {
        scheduleAck(frame.from, lastSeen.get(frame.from)); // our ack may have been lost
        return;
      }
      lastSeen.set(frame.from, frame.seq);
      other = frame.from;
      scheduleAck(frame.from, frame.seq);
      await onMessage(frame.data);
      return;
    }
    case "error": {
      const text = ERRORS[frame.code];
      showError(text ? text(room) : `Signaling server: ${frame.message}`);
      // Before "joined" every error ends this attempt (e.g. locked-out after wrong secrets).
      if (text || frame.fatal || !joined) {
        gaveUp = true;
        setState("failed");
        setStatus("");
        ws.close();
      }
      return;
    }
    case "ack":
      unacked = unacked.filter((u) => u.seq > frame.seq);
      return;
    default:
      return; // "ice-servers": nothing to do
  }
}

// --- the call ------------------------------------------------------------------------------

function polite() {
  // Against a desktop (which keeps its own offer) the browser always yields; between two
  // browsers the smaller id yields.
  return !(other && other.startsWith(WEB_PREFIX) && me > other);
}

function usable(candidate) {
  if (!options.loopback) return true;
  const address = candidate.split(" ")[4] || "";
  return address === "127.0.0.1" || address === "::1";
}

async function ensurePc() {
  if (pc) return pc;
  await mediaReady;
  // One DTLS certificate for the whole call, as the desktop keeps one: a renegotiated path
  // then shows the same fingerprints, so the security code the people compared stays valid.
  certificate ??= await RTCPeerConnection.generateCertificate({
    name: "ECDSA",
    namedCurve: "P-256",
  });
  const conn = new RTCPeerConnection({
    iceServers,
    iceTransportPolicy: options.relay ? "relay" : "all",
    bundlePolicy: "max-bundle",
    certificates: [certificate],
  });
  pc = conn;
  if (localStream) {
    for (const track of localStream.getTracks()) conn.addTrack(track, localStream);
  } else {
    conn.addTransceiver("audio", { direction: "recvonly" });
    conn.addTransceiver("video", { direction: "recvonly" });
  }
  // Negotiated (id 0, label "chat") exactly like the desktop's, so it opens with SCTP.
  const channel = conn.createDataChannel("chat", { negotiated: true, id: 0 });
  chat = channel;
  channel.onopen = () => maybeConnected(conn);
  channel.onmessage = (e) => addChat(typeof e.data === "string" ? e.data : "(binary)", "peer");
  conn.ontrack = (e) => {
    // A renegotiated connection's track replaces the old one of its kind.
    for (const old of remoteStream.getTracks()) {
      if (old.kind === e.track.kind) remoteStream.removeTrack(old);
    }
    remoteStream.addTrack(e.track);
  };
  conn.onicecandidate = (e) => {
    if (conn !== pc) return;
    if (!e.candidate) {
      relay({ type: "end-of-candidates" });
    } else if (e.candidate.candidate && usable(e.candidate.candidate)) {
      relay({
        type: "candidate",
        candidate: e.candidate.candidate,
        sdpMid: e.candidate.sdpMid,
        sdpMLineIndex: e.candidate.sdpMLineIndex,
      });
    }
  };
  conn.onconnectionstatechange = () => {
    if (conn !== pc) return; // a replaced connection: its end is expected
    const state = conn.connectionState;
    if (state === "connected") {
      maybeConnected(conn);
    } else if (state === "failed" && !ended && !standby) {
      setBadge("failed", "failed");
      showError(
        "The connection failed: no network path between you. A relay (TURN server) on the " +
          "signaling server would help.",
      );
      setState("failed");
    } else if (state === "disconnected") {
      setBadge("reconnecting…", "");
    }
  };
  if (!connected) setBadge("connecting…", "");
  return conn;
}

async function renegotiate(sdp) {
  // The desktop replaces a dead path with a fresh peer connection (new ICE, DTLS and SCTP,
  // same certificate; aiortc has no ICE restart). Follow it with a fresh one as well; the
  // old one stays up as the standby until the new one carries the call.
  if (standby) standby.close();
  standby = pc;
  pc = null;
  pendingCandidates = [];
  await ensurePc();
  await pc.setRemoteDescription({ type: "offer", sdp });
  remoteSdp = sdp;
  await flushCandidates();
  await pc.setLocalDescription(await pc.createAnswer());
  relay({ type: "answer", sdp: localSdp() });
}

function localSdp() {
  // Candidates are trickled; keep the description's own lines consistent with the filter.
  return pc.localDescription.sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || usable(line.slice(2)))
    .join("\r\n");
}

async function makeOffer() {
  if (pc || gotOffer || ended) return;
  await ensurePc();
  if (gotOffer) return; // an offer arrived while the camera was opening
  setStatus("Calling…");
  await pc.setLocalDescription(await pc.createOffer());
  relay({ type: "offer", sdp: localSdp() });
}

async function onMessage(msg) {
  switch (msg.type) {
    case "offer": {
      clearTimeout(offerTimer);
      offerTimer = null;
      if (pc && pc.signalingState === "have-local-offer") {
        if (!polite()) return; // ours wins; the other side answers it
        await pc.setLocalDescription({ type: "rollback" });
      } else if (pc && pc.remoteDescription) {
        await renegotiate(msg.sdp);
        return;
      }
      gotOffer = true;
      await ensurePc();
      setStatus("Answering…");
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      remoteSdp = msg.sdp;
      await flushCandidates();
      await pc.setLocalDescription(await pc.createAnswer());
      relay({ type: "answer", sdp: localSdp() });
      return;
    }
    case "answer":
      if (pc && pc.signalingState === "have-local-offer") {
        await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        remoteSdp = msg.sdp;
        await flushCandidates();
      }
      return;
    case "candidate":
      if (!usable(msg.candidate)) return;
      pendingCandidates.push(msg);
      if (pc && pc.remoteDescription) await flushCandidates();
      return;
    case "end-of-candidates":
      return; // trickle continues until the pair is found; nothing to wait for
    case "bye":
      endCall(`The other person hung up (${msg.reason || "hangup"}).`);
      return;
    default:
      return;
  }
}

async function flushCandidates() {
  const queued = pendingCandidates;
  pendingCandidates = [];
  for (const c of queued) {
    try {
      await pc.addIceCandidate({
        candidate: c.candidate,
        sdpMid: c.sdpMid ?? undefined,
        sdpMLineIndex: c.sdpMLineIndex ?? undefined,
      });
    } catch (err) {
      console.warn("ignored a remote candidate", c.candidate, err);
    }
  }
}

async function maybeConnected(conn) {
  // CONNECTED as the desktop means it: DTLS up and the chat channel open.
  if (conn !== pc || conn.connectionState !== "connected" || chat.readyState !== "open") return;
  if (standby) {
    standby.close(); // the renegotiated connection carries the call now
    standby = null;
  }
  const first = !connected;
  connected = true;
  if (first) performance.mark("peercall-connected"); // read by bench/bench_browser.py
  setState("connected");
  setStatus(CONNECTED_TEXT);
  // The SDP text as sent: the browser's parsed remoteDescription keeps only the fingerprint
  // it verifies with (sha-512 from aiortc), and the desktop uses the first one listed.
  const local = sdpFingerprint(conn.localDescription.sdp);
  const remote = sdpFingerprint(remoteSdp);
  if (local && remote) {
    const sas = await shortAuthString(local, remote);
    if (!first && sas !== $("sas").textContent) {
      showError("The security code changed: compare it again.");
    }
    $("sas").textContent = sas;
  }
  await updateBadge();
  if (first) statsTimer = setInterval(updateBadge, 1000);
}

async function updateBadge() {
  if (!pc || ended) return;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair) return;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  if (!local || !remote) return;
  if (local.candidateType === "relay" || remote.candidateType === "relay") {
    setBadge("connected via relay", "relayed");
  } else {
    setBadge(`connected direct (${local.candidateType} ↔ ${remote.candidateType})`, "direct");
  }
}

function endCall(reason) {
  if (ended) return;
  ended = true;
  clearInterval(statsTimer);
  clearInterval(heartbeat);
  clearTimeout(offerTimer);
  if (pc) pc.close();
  if (standby) standby.close();
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  setBadge("call ended", "");
  setState("ended");
  setStatus(`${reason} Reload the page to call again.`);
  send({ type: "leave" });
}

// --- controls ------------------------------------------------------------------------------

function addChat(text, who) {
  const item = document.createElement("li");
  item.className = who;
  item.textContent = `${who === "me" ? "You" : "Them"}: ${text}`;
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function toggle(button, kind, offLabel, onLabel) {
  const off = button.getAttribute("aria-pressed") !== "true";
  button.setAttribute("aria-pressed", String(off));
  button.textContent = off ? onLabel : offLabel;
  if (localStream) for (const t of localStream.getTracks()) if (t.kind === kind) t.enabled = !off;
}

$("mute").onclick = (e) => toggle(e.currentTarget, "audio", "Mute", "Unmute");
$("camera").onclick = (e) => toggle(e.currentTarget, "video", "Camera off", "Camera on");
$("hangup").onclick = () => {
  if (!ended) relay({ type: "bye", reason: "hangup" });
  endCall("You hung up.");
};
$("chat-form").onsubmit = (e) => {
  e.preventDefault();
  const input = $("chat-input");
  const text = input.value;
  if (!text.trim()) return;
  if (!chat || chat.readyState !== "open") {
    showError("Chat works once the call is connected.");
    return;
  }
  if (text.length > MAX_CHAT) {
    showError(`A chat message may be at most ${MAX_CHAT} characters.`);
    return;
  }
  chat.send(text);
  addChat(text, "me");
  input.value = "";
};
$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const room = $("room").value.trim();
  const secret = $("secret").value;
  const keep = [...params].filter(([k]) => k !== "room" && k !== "secret");
  history.replaceState(null, "", `#${new URLSearchParams([["room", room], ["secret", secret], ...keep])}`);
  start(room, secret);
};
window.addEventListener("pagehide", () => {
  if (!ended && pc) relay({ type: "bye", reason: "hangup" });
});

$("remote-video").srcObject = remoteStream;
$("room").value = params.get("room") || "";
$("secret").value = params.get("secret") || "";
if (params.get("room") || params.get("secret")) {
  start(params.get("room") || "", params.get("secret") || "");
} else {
  setStatus("Enter the room and its secret, or open the link you were sent.");
  $("join-form").hidden = false;
}
