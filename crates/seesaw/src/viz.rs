//! Pictures: the long-tail plot of a dataset and images with their instances drawn.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;
use seesaw_data::mask;
use seesaw_data::{Dataset, DatasetStats, Frequency};

const FONT: &str = "sans-serif";

/// plotters draws text only with a registered font; DejaVu Sans is compiled in so that
/// pictures look the same on every machine, with no system fonts needed.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("cannot load the built-in DejaVu Sans font"))
    }
}

/// Colour of a frequency group in every plot: rare red, common orange, frequent blue.
pub fn group_colour(f: Frequency) -> RGBColor {
    match f {
        Frequency::Rare => RGBColor(214, 39, 40),
        Frequency::Common => RGBColor(255, 127, 14),
        Frequency::Frequent => RGBColor(31, 119, 180),
    }
}

/// Writes RGB pixels as a PNG, atomically.
pub fn save_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let mut encoded = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut encoded),
        rgb,
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("{}: cannot encode PNG", path.display()))?;
    seesaw_data::io::write_atomic(path, |w| std::io::Write::write_all(w, &encoded))?;
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Bar chart of training images per class, sorted, on a log scale, coloured by group.
pub fn plot_class_histogram(stats: &DatasetStats, title: &str, out: &Path) -> Result<()> {
    ensure_font()?;
    let (w, h) = (1000u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut classes: Vec<_> = stats.classes.iter().collect();
        classes.sort_by(|a, b| b.images.cmp(&a.images).then(a.id.cmp(&b.id)));
        let n = classes.len().max(1) as f64;
        let ymax = classes.first().map_or(10, |c| c.images).max(10) as f64 * 1.6;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, (0.8f64..ymax).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("classes, most frequent first")
            .y_desc("images per class (log)")
            .x_label_formatter(&|v| format!("{}", *v as i64))
            .label_style((FONT, 14))
            .draw()
            .map_err(plot_err)?;
        for g in Frequency::ALL {
            let colour = group_colour(g);
            let n_g = classes.iter().filter(|c| c.frequency == g).count();
            chart
                .draw_series(
                    classes
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.frequency == g && c.images > 0)
                        .map(|(i, c)| {
                            Rectangle::new(
                                [(i as f64 + 0.1, 0.8), (i as f64 + 0.9, c.images as f64)],
                                colour.filled(),
                            )
                        }),
                )
                .map_err(plot_err)?
                .label(format!("{g} ({n_g} classes)"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
                });
        }
        for boundary in [10.5, 100.5] {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, boundary), (n, boundary)],
                    RGBColor(150, 150, 150).stroke_width(1),
                ))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

/// A distinct, stable colour per category id.
fn category_colour(id: u64) -> [u8; 3] {
    let hue = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
    let (r, g, b) = hsv(hue, 0.85, 0.95);
    [r, g, b]
}

fn hsv(h: f64, s: f64, v: f64) -> (u8, u8, u8) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    ((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8)
}

/// Draws the image `image_id` of `ds` (read from `json`) with its masks, boxes and category
/// names into `out`. Images are found under `image_root` by their file name (or, for LVIS v1,
/// their URL), read with their EXIF orientation and checked against the file's size.
pub fn draw_annotated(
    ds: &Dataset,
    json: &Path,
    image_id: u64,
    image_root: &Path,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let (index, im) = ds
        .images
        .iter()
        .enumerate()
        .find(|(_, im)| im.id == image_id)
        .ok_or_else(|| anyhow!("no image with id {image_id} in the annotation file"))?;
    let rel = im
        .relative_path()
        .ok_or_else(|| anyhow!("image {image_id} has neither file_name nor coco_url"))?;
    let path = image_root.join(&rel);
    let decoded = seesaw_data::read_image(&path)?;
    seesaw_data::check_image_size(&decoded, &path, im, index, json)?;
    let pixels = decoded.rgb;
    let names: std::collections::HashMap<u64, &str> = ds
        .categories
        .iter()
        .map(|c| (c.id, c.name.as_str()))
        .collect();
    let mut items = Vec::new();
    for a in ds.annotations.iter().filter(|a| a.image_id == image_id) {
        let mask = match &a.segmentation {
            Some(seg) => Some(
                mask::decode(seg, im.height, im.width)
                    .with_context(|| format!("annotation {}: cannot decode its mask", a.id))?,
            ),
            None => None,
        };
        items.push(Item {
            category_id: a.category_id,
            bbox: a.bbox,
            mask,
            label: names
                .get(&a.category_id)
                .copied()
                .unwrap_or("?")
                .to_string(),
        });
    }
    render(pixels, &items, out)
}

/// One thing drawn on a picture: a box `[x, y, w, h]`, its mask and its label.
pub struct Item {
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub mask: Option<mask::Bitmap>,
    pub label: String,
}

/// Draws detections (`name score` labels) on the image at `path` into `out`.
pub fn draw_detections(
    path: &Path,
    dets: &[seesaw_data::Detection],
    names: &std::collections::HashMap<u64, String>,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let pixels = seesaw_data::read_image(path)?.rgb;
    let (w, h) = pixels.dimensions();
    let mut items = Vec::new();
    for d in dets {
        let mask = match &d.segmentation {
            Some(seg) => Some(mask::decode(seg, h, w)?),
            None => None,
        };
        let name = names.get(&d.category_id).map_or("?", String::as_str);
        items.push(Item {
            category_id: d.category_id,
            bbox: d.bbox.unwrap_or([0.0; 4]),
            mask,
            label: format!("{name} {:.2}", d.score),
        });
    }
    render(pixels, &items, out)
}

fn render(pixels: image::RgbImage, items: &[Item], out: &Path) -> Result<()> {
    let (iw, ih) = pixels.dimensions();
    // Small images are enlarged so that names stay readable.
    let k = (512 / iw.max(ih)).max(1);
    let (w, h) = (iw * k, ih * k);
    let mut buf =
        image::imageops::resize(&pixels, w, h, image::imageops::FilterType::Nearest).into_raw();
    for a in items {
        let Some(m) = &a.mask else { continue };
        let c = category_colour(a.category_id);
        for y in 0..h as usize {
            for x in 0..w as usize {
                let src = (y / k as usize) * iw as usize + x / k as usize;
                if m.data.get(src).is_some_and(|&v| v != 0) {
                    let p = (y * w as usize + x) * 3;
                    for ch in 0..3 {
                        buf[p + ch] = ((buf[p + ch] as u16 * 11 + c[ch] as u16 * 9) / 20) as u8;
                    }
                }
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let font = (FONT, 15).into_font().color(&WHITE);
        let s = k as f64;
        let mut rects = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for a in items {
            let (x0, y0) = ((a.bbox[0] * s) as i32, (a.bbox[1] * s) as i32);
            let (x1, y1) = (
                ((a.bbox[0] + a.bbox[2]) * s) as i32,
                ((a.bbox[1] + a.bbox[3]) * s) as i32,
            );
            let (tw, th) = root.estimate_text_size(&a.label, &font).map_err(plot_err)?;
            rects.push([x0, y0, x1, y1]);
            sizes.push((tw as i32 + 4, th as i32 + 2));
        }
        let spots = place_labels(&rects, &sizes, (w as i32, h as i32));
        let colours: Vec<RGBColor> = items
            .iter()
            .map(|a| {
                let [c0, c1, c2] = category_colour(a.category_id);
                RGBColor(c0, c1, c2)
            })
            .collect();
        // Every box first, then every label, so that no box line crosses a label.
        for (r, colour) in rects.iter().zip(&colours) {
            root.draw(&Rectangle::new(
                [(r[0], r[1]), (r[2], r[3])],
                colour.stroke_width(2),
            ))
            .map_err(plot_err)?;
        }
        for ((a, colour), ((lw, lh), (lx, ly))) in
            items.iter().zip(&colours).zip(sizes.iter().zip(&spots))
        {
            root.draw(&Rectangle::new(
                [(*lx, *ly), (lx + lw, ly + lh)],
                colour.filled(),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(a.label.clone(), (lx + 2, ly + 1), font.clone()))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

/// Where each box's label goes (top-left corners), so that labels on a crowded picture do not
/// cover each other: boxes `[x0, y0, x1, y1]` and label sizes `(w, h)` in pixels of a `size`
/// picture. Earlier boxes choose first (detections come best first). Each label tries, in
/// order, the spot above its box's top-left corner, just inside it, then rows further up and
/// further down; it takes the first spot inside the picture that overlaps no label placed
/// before, or the first spot when every one does.
fn place_labels(boxes: &[[i32; 4]], sizes: &[(i32, i32)], size: (i32, i32)) -> Vec<(i32, i32)> {
    let (w, h) = size;
    let mut placed: Vec<[i32; 4]> = Vec::with_capacity(boxes.len());
    let mut spots = Vec::with_capacity(boxes.len());
    for (b, &(lw, lh)) in boxes.iter().zip(sizes) {
        let x = b[0].min(w - lw).max(0);
        let clamp_y = |y: i32| y.min(h - lh).max(0);
        let spots_tried: Vec<[i32; 4]> = (0..16)
            .flat_map(|n| [b[1] - lh * (n + 1), b[1] + lh * n])
            .map(|y| {
                let y = clamp_y(y);
                [x, y, x + lw, y + lh]
            })
            .collect();
        let free = |r: &&[i32; 4]| {
            placed
                .iter()
                .all(|p| r[2] <= p[0] || p[2] <= r[0] || r[3] <= p[1] || p[3] <= r[1])
        };
        let r = *spots_tried.iter().find(free).unwrap_or(&spots_tried[0]);
        placed.push(r);
        spots.push((r[0], r[1]));
    }
    spots
}

/// Per-class AP against training images per class (log x), coloured by frequency group; one
/// marker per run (`label`, evaluation) so that losses can be compared on one picture. The x
/// value is the category's declared `image_count`, or else its images in `gt`.
pub fn plot_ap_vs_frequency(
    runs: &[(&str, &seesaw_eval::Evaluation)],
    gt: &Dataset,
    title: &str,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let counted = gt.category_counts();
    let declared = gt.categories.iter().all(|c| c.image_count.is_some());
    let x_of: std::collections::HashMap<u64, f64> = gt
        .categories
        .iter()
        .zip(&counted)
        .map(|(c, &(images, _))| (c.id, c.image_count.unwrap_or(images).max(1) as f64))
        .collect();
    let x_desc = if declared {
        "training images of the class (log)"
    } else {
        "images of the class in this ground truth (log)"
    };
    let xmax = x_of.values().copied().fold(10.0, f64::max) * 1.5;
    let (w, h) = (1000u32, 600u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d((0.8f64..xmax).log_scale(), 0f64..1.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("AP (IoU 0.50:0.95)")
            .label_style((FONT, 14))
            .draw()
            .map_err(plot_err)?;
        for (r, (label, ev)) in runs.iter().enumerate() {
            for g in Frequency::ALL {
                let pts: Vec<(f64, f64)> = ev
                    .per_class
                    .iter()
                    .filter(|c| c.ap >= 0.0)
                    .filter_map(|c| {
                        let x = *x_of.get(&c.id)?;
                        let group = c
                            .frequency
                            .unwrap_or_else(|| Frequency::from_image_count(x as u64));
                        (group == g).then_some((x, c.ap))
                    })
                    .collect();
                let colour = group_colour(g);
                let name = if label.is_empty() {
                    format!("{g}")
                } else {
                    format!("{label}, {g}")
                };
                // One marker per run: filled circles, triangles, then crosses.
                let series = match r {
                    0 => chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                        .map_err(plot_err)?
                        .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled())),
                    1 => chart
                        .draw_series(
                            pts.iter()
                                .map(|&p| TriangleMarker::new(p, 5, colour.stroke_width(2))),
                        )
                        .map_err(plot_err)?
                        .legend(move |(x, y)| {
                            TriangleMarker::new((x + 6, y), 5, colour.stroke_width(2))
                        }),
                    _ => {
                        let size = 2 + 2 * r as i32;
                        chart
                            .draw_series(
                                pts.iter()
                                    .map(|&p| Cross::new(p, size, colour.stroke_width(2))),
                            )
                            .map_err(plot_err)?
                            .legend(move |(x, y)| {
                                Cross::new((x + 6, y), size, colour.stroke_width(2))
                            })
                    }
                };
                series.label(name);
            }
        }
        for boundary in [10.5, 100.5] {
            chart
                .draw_series(LineSeries::new(
                    [(boundary, 0.0), (boundary, 1.0)],
                    RGBColor(150, 150, 150).stroke_width(1),
                ))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

/// One panel of [`plot_curves`]: a key and each run's `(iteration, value)` points.
pub struct CurvePanel {
    pub key: String,
    pub runs: Vec<(String, Vec<(f64, f64)>)>,
}

/// Colours of the runs on a curve chart (matplotlib's tab10).
const RUN_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Training curves, one panel per key stacked top to bottom, every run a coloured line (a
/// marker per point where a run has few, such as validation AP), as mmdetection's
/// `analyze_logs.py plot_curve` draws them; written atomically as a PNG.
///
/// # Errors
/// No panels, a panel without points, or drawing/writing failures.
pub fn plot_curves(panels: &[CurvePanel], title: &str, out: &Path) -> Result<()> {
    ensure_font()?;
    if panels.is_empty() {
        return Err(anyhow!("no curves to draw"));
    }
    let (w, panel_h) = (1000u32, 330u32);
    let h = panel_h * panels.len() as u32 + 40;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let root = root.titled(title, (FONT, 22)).map_err(plot_err)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            let points = panel.runs.iter().flat_map(|(_, p)| p.iter());
            let (mut x1, mut y0, mut y1) = (1f64, f64::INFINITY, f64::NEG_INFINITY);
            for &(x, y) in points {
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            if !y0.is_finite() {
                return Err(anyhow!("{}: no values to draw", panel.key));
            }
            let pad = ((y1 - y0) * 0.05).max(1e-6);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.key, (FONT, 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(0f64..x1, (y0 - pad)..(y1 + pad))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("iteration")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FONT, 13))
                .draw()
                .map_err(plot_err)?;
            for (r, (name, pts)) in panel.runs.iter().enumerate() {
                if pts.is_empty() {
                    continue;
                }
                let colour = RUN_COLOURS[r % RUN_COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                if pts.len() <= 30 {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                        .map_err(plot_err)?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 13))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

/// A confusion matrix as mmdetection's `confusion_matrix.py` draws it: `percent[gt][det]` in
/// percent of each ground-truth row (rows and columns named by `names`, the last
/// `background`), a blue scale, the value in each cell; written atomically as a PNG.
///
/// # Errors
/// A matrix that is not square with one name per row, or drawing/writing failures.
pub fn plot_confusion(
    names: &[String],
    percent: &[Vec<f64>],
    title: &str,
    out: &Path,
) -> Result<()> {
    ensure_font()?;
    let n = names.len();
    if n == 0 || percent.len() != n || percent.iter().any(|r| r.len() != n) {
        return Err(anyhow!(
            "confusion matrix: {n} names for a matrix of another size"
        ));
    }
    let cell = (720 / n as u32).clamp(14, 48);
    let label_w = 190u32;
    let (w, h) = (label_w + cell * n as u32 + 30, cell * n as u32 + 90);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        root.draw(&Text::new(title.to_string(), (10, 10), (FONT, 20)))
            .map_err(plot_err)?;
        let (x0, y0) = (label_w as i32, 50i32);
        let c = cell as i32;
        let font = (FONT, (cell as f64 * 0.45).clamp(8.0, 14.0));
        for (i, row) in percent.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let t = (v / 100.0).clamp(0.0, 1.0);
                let colour = RGBColor(
                    (247.0 - t * 239.0) as u8,
                    (251.0 - t * 203.0) as u8,
                    (255.0 - t * 148.0) as u8,
                );
                let (x, y) = (x0 + j as i32 * c, y0 + i as i32 * c);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], colour.filled()))
                    .map_err(plot_err)?;
                if v > 0.0 && cell >= 22 {
                    let text_colour = if t > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        format!("{v:.0}"),
                        (x + 3, y + c / 3),
                        font.into_font().color(&text_colour),
                    ))
                    .map_err(plot_err)?;
                }
            }
        }
        let short = |s: &str| -> String {
            let v: Vec<char> = s.chars().collect();
            if v.len() > 22 {
                v[..21].iter().collect::<String>() + "…"
            } else {
                s.to_string()
            }
        };
        for (i, name) in names.iter().enumerate() {
            let y = y0 + i as i32 * c + c / 3;
            root.draw(&Text::new(short(name), (6, y), font))
                .map_err(plot_err)?;
            // Column names, written downwards under the matrix would need rotation; a short
            // index row on top keeps the picture readable: column j is row j's class.
            let head = if i + 1 == n {
                "bg".to_string()
            } else {
                format!("{i}")
            };
            root.draw(&Text::new(
                head,
                (x0 + i as i32 * c + 2, y0 - 16),
                (FONT, 11),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            "rows: ground truth (numbered as the columns); columns: detections; % of each row"
                .to_string(),
            (x0, y0 + n as i32 * c + 12),
            (FONT, 13),
        ))
        .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

/// One bar of [`plot_ladder`]: a rung's label, its mask AP (x 100; None where undefined) and
/// the deck's.
pub struct LadderBar {
    pub label: String,
    pub value: Option<f64>,
    pub deck: f64,
}

/// The deck's ladder chart: one bar per rung with its value and its change from the rung
/// below written above it; the deck's LVIS numbers as grey bars beside ours.
pub fn plot_ladder(bars: &[LadderBar], title: &str, out: &Path) -> Result<()> {
    ensure_font()?;
    let n = bars.len().max(1);
    let top = bars
        .iter()
        .flat_map(|b| [b.value.unwrap_or(0.0), b.deck])
        .fold(10.0f64, f64::max)
        * 1.18;
    let (w, h) = ((140 * n as u32).max(700), 620u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(16)
            .x_label_area_size(70)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("mask AP")
            .label_style((FONT, 14))
            .draw()
            .map_err(plot_err)?;
        let ours = RGBColor(52, 101, 164);
        let deck = RGBColor(190, 190, 190);
        let mut below: Option<f64> = None;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.52, 0.0), (x + 0.9, b.deck)],
                    deck.filled(),
                )])
                .map_err(plot_err)?;
            let v = b.value.unwrap_or(0.0);
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.1, 0.0), (x + 0.48, v)],
                    ours.filled(),
                )])
                .map_err(plot_err)?;
            let text = match (b.value, below) {
                (Some(v), Some(p)) => {
                    let d = ((v - p) * 10.0).round() / 10.0;
                    format!("{v:.1} ({:+.1})", if d == 0.0 { 0.0 } else { d })
                }
                (Some(v), None) => format!("{v:.1}"),
                (None, _) => "-".to_string(),
            };
            chart
                .draw_series([Text::new(text, (x + 0.08, v + top * 0.035), (FONT, 13))])
                .map_err(plot_err)?;
            chart
                .draw_series([Text::new(
                    format!("{:.1}", b.deck),
                    (x + 0.55, b.deck + top * 0.035),
                    (FONT, 12).into_font().color(&RGBColor(110, 110, 110)),
                )])
                .map_err(plot_err)?;
            below = b.value.or(below);
        }
        // The rungs' names under their bars, in pixels below the plotting area.
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let step = (xs.end - xs.start) as f64 / n as f64;
        for (i, b) in bars.iter().enumerate() {
            let mut y = ys.end + 8;
            for word in b.label.split(' ') {
                let px = xs.start + (step * (i as f64 + 0.5)) as i32 - 4 * word.len() as i32;
                root.draw(&Text::new(word.to_string(), (px, y), (FONT, 13)))
                    .map_err(plot_err)?;
                y += 16;
            }
        }
        chart
            .draw_series([Rectangle::new([(0.0, 0.0), (0.0, 0.0)], ours.filled())])
            .map_err(plot_err)?
            .label("ours")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], ours.filled()));
        chart
            .draw_series([Rectangle::new([(0.0, 0.0), (0.0, 0.0)], deck.filled())])
            .map_err(plot_err)?
            .label("the deck (LVIS v1 val)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], deck.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    save_png(out, w, h, &buf)
}

#[cfg(test)]
mod tests {
    use super::place_labels;

    fn overlap(a: (i32, i32), b: (i32, i32), size: (i32, i32)) -> bool {
        let (w, h) = size;
        !(a.0 + w <= b.0 || b.0 + w <= a.0 || a.1 + h <= b.1 || b.1 + h <= a.1)
    }

    #[test]
    fn labels_of_boxes_sharing_a_corner_do_not_cover_each_other() {
        // Five boxes with the same top-left corner, a label 40 x 17 each, 512 x 512 picture.
        let boxes = [[100, 100, 200, 200]; 5];
        let sizes = [(40, 17); 5];
        let spots = place_labels(&boxes, &sizes, (512, 512));
        assert_eq!(spots[0], (100, 83), "the first label sits above its box");
        for i in 0..5 {
            for j in 0..i {
                assert!(
                    !overlap(spots[i], spots[j], (40, 17)),
                    "{i} and {j}: {spots:?}"
                );
            }
        }
    }

    #[test]
    fn labels_stay_inside_the_picture() {
        // A box in the top-right corner: its label can go neither above nor right of it.
        let spots = place_labels(&[[500, 0, 512, 10]], &[(40, 17)], (512, 512));
        assert_eq!(spots, vec![(472, 0)]);
    }
}
