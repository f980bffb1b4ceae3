/// The panel's static files, served by the agent as they are: no build step, no charting
/// library (the charts are plain SVG drawn by `PanelScript`). The page is served with a
/// Content-Security-Policy that allows only these files, so even a VM name that got into
/// the markup could not run a script (and the script only ever sets names as text).
enum PanelPage {
    struct File: Sendable {
        let contentType: String
        let body: String
    }

    static let files: [String: File] = [
        "/": File(contentType: "text/html; charset=utf-8", body: html),
        "/panel.js": File(contentType: "text/javascript; charset=utf-8", body: PanelScript.source),
        "/panel.css": File(contentType: "text/css; charset=utf-8", body: css),
    ]

    static let headers: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-cache"),
        ("Referrer-Policy", "no-referrer"),
    ]

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>vmpulse</title>
        <link rel="stylesheet" href="/panel.css">
        <script src="/panel.js" defer></script>
        </head>
        <body>
        <header>
          <h1>vmpulse</h1>
          <span id="live" class="live off">connecting</span>
          <span id="updated"></span>
        </header>
        <form id="login" hidden>
          <label>This agent needs a token (api.token_file): <input id="token" type="password" autocomplete="off"></label>
          <button type="submit">Use</button>
        </form>
        <main>
          <section id="list">
            <input id="search" type="search" placeholder="Search name, UUID or status" aria-label="Search VMs">
            <span id="count"></span>
            <table id="vms">
              <thead><tr>
                <th data-sort="name">Name</th><th data-sort="status">Status</th><th data-sort="cpu" class="n">CPU %</th>
                <th data-sort="readBps" class="n">Read/s</th><th data-sort="writeBps" class="n">Write/s</th>
                <th data-sort="iops" class="n">IOPS</th><th data-sort="statsAge" class="n">Age s</th>
              </tr></thead>
              <tbody></tbody>
            </table>
            <p class="hint">Rates are over the last minute. Click a column to sort, a row to see its disks.</p>
          </section>
          <section id="detail">
            <p class="hint" id="pick">Pick a VM on the left.</p>
          </section>
        </main>
        </body>
        </html>

        """#

    static let css = #"""
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f4f6f9; }
        header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; background: #1d2330; color: #fff; }
        header h1 { font-size: 1.2em; margin: 0; }
        .live { padding: 0 .5em; border-radius: .8em; background: #2e7d32; }
        .live.off { background: #9e3a3a; }
        #login { padding: 1em; background: #fff3cd; }
        main { display: grid; grid-template-columns: minmax(36em, 2fr) 3fr; gap: 1em; padding: 1em; }
        section { background: #fff; border-radius: 6px; padding: .8em; overflow: auto; }
        #list { max-height: calc(100vh - 5em); }
        #search { width: 70%; padding: .3em; }
        table { border-collapse: collapse; width: 100%; }
        th, td { padding: .2em .4em; border-bottom: 1px solid #e3e7ee; text-align: left; white-space: pre; }
        th { cursor: pointer; user-select: none; background: #eef1f6; position: sticky; top: 0; }
        th.asc::after { content: " \25B2"; } th.desc::after { content: " \25BC"; }
        table.windows, table.thin { font-size: .85em; }
        .n { text-align: right; font-variant-numeric: tabular-nums; }
        #vms tbody tr { cursor: pointer; }
        #vms tbody tr:hover { background: #f0f4ff; }
        #vms tbody tr.chosen { background: #dde7ff; }
        tr.stale td { color: #9e3a3a; }
        .hint { color: #667; font-size: .9em; }
        h2 { font-size: 1.1em; margin: .2em 0; white-space: pre-wrap; }
        h3 { font-size: 1em; margin: 1em 0 .3em; }
        .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: .6em; }
        figure { margin: 0; }
        figcaption { font-size: .9em; color: #445; }
        svg.chart { width: 100%; height: 130px; background: #fafbfd; border: 1px solid #e3e7ee; }
        svg.chart path { fill: none; stroke-width: 1.5; }
        svg.chart text { font-size: 10px; fill: #667; }
        .read { stroke: #1565c0; } .write { stroke: #e65100; } .depth { stroke: #6a1b9a; }
        .key span { display: inline-block; width: 1em; height: .2em; vertical-align: middle; margin: 0 .2em 0 .6em; }
        .key .read { background: #1565c0; } .key .write { background: #e65100; } .key .depth { background: #6a1b9a; }

        """#
}
