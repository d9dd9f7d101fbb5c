// The six-digit short authentication string (SAS), the same function as the desktop's
// app.session.short_auth_string: SHA-256 over "peercall-sas|A|B", where A and B are the two
// DTLS fingerprints ("sha-256 AB:CD:...", RFC 8122 §5) upper-cased and sorted, so both ends
// get the same digits whichever side offered. A man in the middle presents his own
// certificate to each side, so the two ends' digits differ (the idea of ZRTP's SAS,
// RFC 6189 §7). WebCrypto's digest needs a secure context (https or http://localhost).

/** The first a=fingerprint value of an SDP ("algorithm value"), or null. */
export function sdpFingerprint(sdp) {
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith("a=fingerprint:")) return line.slice("a=fingerprint:".length).trim();
  }
  return null;
}

/** "ddd ddd" from two fingerprints, in either order. */
export async function shortAuthString(fingerprintA, fingerprintB) {
  // Plain code-unit order: the same as Python's sorted() on these ASCII strings.
  const [a, b] = [fingerprintA, fingerprintB].map((f) => f.trim().toUpperCase()).sort();
  const data = new TextEncoder().encode(`peercall-sas|${a}|${b}`);
  const digest = new DataView(await crypto.subtle.digest("SHA-256", data));
  const number = digest.getUint32(0, false) % 1000000;
  const digits = String(number).padStart(6, "0");
  return `${digits.slice(0, 3)} ${digits.slice(3)}`;
}
