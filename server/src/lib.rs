//! ev-server
