//! ev-supervisor
