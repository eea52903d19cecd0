// A Plotly figure (plotly.py's JSON) drawn by plotly.js's basic bundle (scatter, bar, pie), which
// the dashboard serves itself from dashboard/static/. Streamlit's own st.plotly_chart loads the
// full 4.7 MB bundle in every new tab: on the demo machine a bare page drew its chart at 2.7 s with
// it and at 1.45 s with this 1.2 MB one (medians of 6 loads). Mounted by theme.chart through
// st.components.v2.
//
// data: {src: the bundle's URL, figure: {data, layout}, config: Plotly's config}

function library(src) {
  // One <script> per page, shared by every chart and every rerun.
  window.__milepostPlotly ??= new Promise((resolve, reject) => {
    if (window.Plotly) {
      resolve(window.Plotly);
      return;
    }
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => {
      window.__milepostPlotly = undefined; // let the next render try again
      reject(new Error(`${src} did not load`));
    };
    document.head.appendChild(script);
  });
  return window.__milepostPlotly;
}

export default function ({ data, parentElement }) {
  let plot = parentElement.querySelector(".milepost-plotly");
  if (!plot) {
    plot = document.createElement("div");
    plot.className = "milepost-plotly";
    plot.style.width = "100%";
    parentElement.appendChild(plot);
    // The page's column can change width without the window changing (the sidebar folding away):
    // a drawn chart follows it.
    new ResizeObserver(() => {
      if (plot._fullLayout) window.Plotly.Plots.resize(plot);
    }).observe(plot);
  }
  let unmounted = false;
  library(data.src)
    .then((Plotly) => {
      if (!unmounted) {
        plot.removeAttribute("role");
        return Plotly.react(plot, data.figure.data, data.figure.layout, data.config);
      }
    })
    .catch((error) => {
      plot.textContent = `The chart could not be drawn: ${error.message}.`;
      plot.setAttribute("role", "alert");
    });
  return () => {
    unmounted = true;
    window.Plotly?.purge(plot);
  };
}
