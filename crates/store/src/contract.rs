//! The behaviour suite every backend must pass (being written).
