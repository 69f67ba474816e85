// Turns an RTCPeerConnection's getStats() report into the few numbers a
// person (or a test) wants: which candidate pair carries the call and over
// what, round-trip time, bitrates, loss, resolution and frame rate.
//
// Bitrates need two samples, so callers pass the previous summary back in.

function selectedPair(report) {
  for (const s of report.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) return report.get(s.selectedCandidatePairId);
  }
  // Browsers without transport stats flag the pair itself.
  for (const s of report.values()) {
    if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) return s;
  }
  return null;
}

function candidate(c) {
  if (!c) return null;
  return {
    type: c.candidateType,
    protocol: c.protocol,
    // How the browser reaches the TURN server (udp, tcp or tls), for relays.
    relayProtocol: c.relayProtocol || null,
    address: c.address ?? c.ip,
    port: c.port,
    url: c.url || null,
  };
}

export async function summarize(pc, prev = null) {
  const report = await pc.getStats();
  const now = performance.now();
  const out = {
    at: now,
    pair: null,
    rttMs: null,
    bytesIn: 0,
    bytesOut: 0,
    bitrateIn: null,
    bitrateOut: null,
    packetsLost: 0,
    packetsIn: 0,
    videoIn: [],
    videoOut: [],
    framesDecoded: 0,
  };
  const pair = selectedPair(report);
  if (pair) {
    out.pair = {
      local: candidate(report.get(pair.localCandidateId)),
      remote: candidate(report.get(pair.remoteCandidateId)),
    };
    if (pair.currentRoundTripTime !== undefined) out.rttMs = pair.currentRoundTripTime * 1000;
  }
  for (const s of report.values()) {
    if (s.type === 'inbound-rtp') {
      out.bytesIn += s.bytesReceived || 0;
      out.packetsLost += Math.max(0, s.packetsLost || 0);
      out.packetsIn += s.packetsReceived || 0;
      if (s.kind === 'video') {
        out.framesDecoded += s.framesDecoded || 0;
        out.videoIn.push({
          mid: s.mid,
          width: s.frameWidth || 0,
          height: s.frameHeight || 0,
          fps: s.framesPerSecond || 0,
          framesDecoded: s.framesDecoded || 0,
        });
      }
    } else if (s.type === 'outbound-rtp') {
      out.bytesOut += s.bytesSent || 0;
      if (s.kind === 'video' && s.frameWidth) {
        out.videoOut.push({ mid: s.mid, width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond || 0 });
      }
    }
  }
  if (prev) {
    const secs = (now - prev.at) / 1000;
    if (secs > 0) {
      out.bitrateIn = Math.max(0, ((out.bytesIn - prev.bytesIn) * 8) / secs);
      out.bitrateOut = Math.max(0, ((out.bytesOut - prev.bytesOut) * 8) / secs);
    }
  }
  return out;
}

// "relay (udp → TURN over tls)" style description of one candidate.
export function describeCandidate(c) {
  if (!c) return '–';
  const via = c.type === 'relay' && c.relayProtocol ? `, TURN over ${c.relayProtocol.toUpperCase()}` : '';
  return `${c.type} ${c.protocol?.toUpperCase() ?? ''}${via}`;
}

// Short label for the tile badge: how this peer is reached.
export function routeLabel(pair) {
  if (!pair?.local) return null;
  const types = [pair.local.type, pair.remote?.type];
  if (types.includes('relay')) {
    const proto = (pair.local.type === 'relay' && pair.local.relayProtocol) || pair.local.protocol;
    return `relay · ${proto?.toUpperCase() ?? ''}`;
  }
  if (types.includes('srflx') || types.includes('prflx')) return `P2P · ${pair.local.protocol?.toUpperCase() ?? ''}`;
  return `direct · ${pair.local.protocol?.toUpperCase() ?? ''}`;
}
