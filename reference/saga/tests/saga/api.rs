//! The HTTP edge of the orchestrator, through a real socket.
