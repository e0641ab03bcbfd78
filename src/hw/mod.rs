//! The board's hardware, behind embedded-hal traits where a test double must stand in: GPIO
//! lines ([`gpio`]) and the attached screen ([`display`], one file per backend).

pub mod display;
pub mod gpio;
