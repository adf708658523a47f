//! Client command payloads (`COM_*`): checked parsing of one whole command packet payload into
//! [`crate::event::Command`]. Does not do framing, compression or response pairing.
