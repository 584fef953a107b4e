"""The chain side: the BatchMinted decoder, keccak, and the one JSON-RPC client
(transport and batch policy, log fetching with its guards, provider error formats)."""
