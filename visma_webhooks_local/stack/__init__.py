"""The local stack: emulated AWS, the real functions behind a local webhook endpoint and event
source mapping, and Visma (a real one or the embedded sandbox); :mod:`.local` runs it."""
