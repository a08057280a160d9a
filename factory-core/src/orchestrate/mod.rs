//! Orchestration: drives epics from text to merged commits through the ports only.
