//! QR codes for authenticator apps, as inline SVG (no image files, nothing fetched).

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use tessera_core::Error;

/// The QR code of `text` (an `otpauth://` URI) as an SVG document with a quiet zone.
pub fn svg(text: &str) -> Result<String, Error> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|error| Error::Internal(format!("cannot make a QR code: {error}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_an_svg_document() {
        let svg =
            super::svg("otpauth://totp/Tessera:ann%40example.com?secret=JBSWY3DPEHPK3PXP").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("</svg>"));
    }
}
