//! An application instance's components and their produces/consumes edges as an SVG picture
//! (the `puppet app show` view): producers left of their consumers, one column per step.

use super::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One component as the picture needs it.
#[derive(Clone, Debug)]
pub struct GraphComponent {
    /// `Lamp::Db['prod']`
    pub label: String,
    pub node: String,
    /// Capabilities exported (`Sql['lamp-prod']`).
    pub produces: Vec<String>,
    /// Capabilities consumed or required.
    pub consumes: Vec<String>,
}

const BOX_WIDTH: usize = 230;
const BOX_HEIGHT: usize = 52;
const COLUMN_GAP: usize = 110;
const ROW_GAP: usize = 26;
const MARGIN: usize = 16;

/// Edges `(producer, consumer, capability)` by matching capability names.
pub fn edges(components: &[GraphComponent]) -> Vec<(usize, usize, String)> {
    let mut producers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        for capability in &c.produces {
            producers.entry(capability.as_str()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (consumer, c) in components.iter().enumerate() {
        for capability in &c.consumes {
            for &producer in producers.get(capability.as_str()).into_iter().flatten() {
                if producer != consumer {
                    out.push((producer, consumer, capability.clone()));
                }
            }
        }
    }
    out
}

/// Each component's column: one past its furthest producer (cycles, which the planner
/// refuses anyway, stop at the component count).
pub fn columns(count: usize, edges: &[(usize, usize, String)]) -> Vec<usize> {
    let mut column = vec![0usize; count];
    for _ in 0..count {
        let mut changed = false;
        for (producer, consumer, _) in edges {
            if column[*consumer] < column[*producer] + 1 && column[*producer] + 1 < count {
                column[*consumer] = column[*producer] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    column
}

/// The picture of one instance.
pub fn instance_svg(title: &str, components: &[GraphComponent]) -> String {
    let edges = edges(components);
    let column = columns(components.len(), &edges);
    let mut row_in_column: BTreeMap<usize, usize> = BTreeMap::new();
    let positions: Vec<(usize, usize)> = column
        .iter()
        .map(|&c| {
            let row = row_in_column.entry(c).or_default();
            let position = (
                MARGIN + c * (BOX_WIDTH + COLUMN_GAP),
                MARGIN + *row * (BOX_HEIGHT + ROW_GAP),
            );
            *row += 1;
            position
        })
        .collect();
    let columns_used = column.iter().max().map_or(1, |m| m + 1);
    let rows_used = row_in_column.values().max().copied().unwrap_or(1).max(1);
    let width = 2 * MARGIN + columns_used * BOX_WIDTH + (columns_used - 1) * COLUMN_GAP;
    let height = 2 * MARGIN + rows_used * BOX_HEIGHT + (rows_used - 1) * ROW_GAP;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"app-graph\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\"/></marker></defs>",
        escape(&format!(
            "{title}: {} components, {} edges",
            components.len(),
            edges.len()
        ))
    );
    for (producer, consumer, capability) in &edges {
        let (px, py) = positions[*producer];
        let (cx, cy) = positions[*consumer];
        let (x1, y1) = (px + BOX_WIDTH, py + BOX_HEIGHT / 2);
        let (x2, y2) = (cx, cy + BOX_HEIGHT / 2);
        let mid = (x1 + x2) / 2;
        let _ = write!(
            out,
            "<g class=\"edge\"><path d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\" marker-end=\"url(#arrow)\"/><text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
            (y1 + y2) / 2 - 4,
            escape(capability)
        );
    }
    for (component, (x, y)) in components.iter().zip(&positions) {
        let _ = write!(
            out,
            "<g class=\"component\"><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_WIDTH}\" height=\"{BOX_HEIGHT}\" rx=\"6\"/>\
             <text x=\"{}\" y=\"{}\">{}</text><text class=\"node\" x=\"{}\" y=\"{}\">on {}</text></g>",
            x + 10,
            y + 21,
            escape(&component.label),
            x + 10,
            y + 40,
            escape(&component.node)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(label: &str, produces: &[&str], consumes: &[&str]) -> GraphComponent {
        GraphComponent {
            label: label.into(),
            node: format!("{label}.example.com"),
            produces: produces.iter().map(|s| s.to_string()).collect(),
            consumes: consumes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_consumer_is_drawn_right_of_its_producer_with_the_capability_on_the_edge() {
        let lamp = [
            component("web", &["Http['w']"], &["Sql['db']"]),
            component("db", &["Sql['db']"], &[]),
            component("lb", &[], &["Http['w']"]),
        ];
        let found = edges(&lamp);
        assert_eq!(
            found,
            vec![
                (1, 0, "Sql['db']".to_string()),
                (0, 2, "Http['w']".to_string())
            ]
        );
        assert_eq!(columns(3, &found), vec![1, 0, 2]);
        let svg = instance_svg("Lamp[prod]", &lamp);
        assert!(svg.contains("Sql[&#39;db&#39;]") && svg.contains("on db.example.com"));
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
    }

    #[test]
    fn a_cycle_does_not_loop_forever() {
        let cyclic = [
            component("a", &["X"], &["Y"]),
            component("b", &["Y"], &["X"]),
        ];
        let found = edges(&cyclic);
        assert!(columns(2, &found).iter().all(|c| *c < 2));
    }
}
