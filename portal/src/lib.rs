//! ev-portal
