"""The HTML report's assets, inline in every page: its style sheet, the
script that adds hover read-outs to the charts and an expand-all button,
the error trap that marks the page when a script fails (the tests look for
data-rh-error), and the Content-Security-Policy that forbids loading
anything from anywhere."""

CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#d0d5dd;--bg:#fff;--panel:#f6f7f9;--leak:#c62828;
--error:#8e24aa;--clean:#2e7d32;--inc:#b26a00;--accent:#1f5fbf;--hot:#fdecea}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1180px;padding:18px 24px 60px}
h1{font-size:22px;margin:6px 0 10px;word-break:break-all}h1 code,h1 .target{font-size:21px}
h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:16px;margin:22px 0 6px}
h4{font-size:15px;margin:0 0 6px;font-weight:600}h5{margin:8px 0 4px;font-size:14px}
code,pre,.loc,.where,.target{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,
"DejaVu Sans Mono",monospace;font-size:13px}
.target{font-weight:400;color:#333}.muted{color:var(--muted)}
nav.toc{font-size:13px;margin:0 0 8px}nav.toc a{margin-right:10px;word-break:break-all}
table.suite{width:100%}table.suite td{word-break:break-word}
h2 .target{font-size:15px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.summary{background:var(--panel);border:1px solid var(--line);border-radius:8px;
padding:12px 16px;margin:10px 0 16px}
.verdictline{font-size:17px;margin:2px 0 6px}
.badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700;
font-size:14px;letter-spacing:.04em;margin-right:6px;vertical-align:1px}
.v-leak{background:var(--leak)}.v-error{background:var(--error)}.v-clean{background:var(--clean)}
.v-inconclusive{background:var(--inc)}.v-none{background:#777}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;text-align:left;
vertical-align:top}th{font-weight:600;font-size:13px;color:#444}
table.rates td,table.rates th{border:1px solid var(--line);text-align:right}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.hot,tr.hot td{background:var(--hot);color:#8a1c1c;font-weight:600}td.down{color:var(--error);
font-weight:600}
table.suite,table.types,table.samples,table.objects,table.growth,table.events,table.facts{
border-top:1px solid var(--line)}
table.suite tr+tr td,table.types tr+tr td,table.samples tr+tr td,table.facts tr+tr td,
table.facts tr+tr th{border-top:1px solid #eceef2}table.facts th{white-space:nowrap}
tr.warm-up td,tr.baseline td{color:var(--muted)}
.culpritline{font-size:15px;margin:6px 0}.culpritline .where{font-weight:700}
ul.notes{margin:6px 0;padding-left:18px;color:#5a4500}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:12px}
figure.chartbox{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px 8px;
background:#fff}figure.chartbox.hot{border-color:#e6a5a5}figure.wide{max-width:100%}
figcaption{font-size:13px}.rate{color:#333;font-weight:600;font-size:13px}
.trend{font-size:12px;padding:0 5px;border-radius:3px;background:#eef0f3;color:#555}
.trend.growing{background:var(--hot);color:#a31515}.trend.falling{background:#f3e5f5;
color:var(--error)}
svg.chart{width:100%;height:auto;display:block;font-size:12.5px;font-family:system-ui,sans-serif}
svg .grid{stroke:#eceef2}svg .axis{stroke:#98a2b3}svg .ytick{text-anchor:end;fill:#667085}
svg .xtick{text-anchor:middle;fill:#667085}svg .xlabel{text-anchor:end;fill:#98a2b3}
svg .warm{fill:#eef0f3}svg .warmlabel{fill:#98a2b3}
svg .series{fill:none;stroke:var(--accent);stroke-width:1.6;stroke-linejoin:round}
svg .dots{stroke:var(--accent);stroke-width:4.5;stroke-linecap:round}
svg .fit{fill:none;stroke:#667085;stroke-width:1.4;stroke-dasharray:5 3}
svg .fit.up{stroke:var(--leak)}
svg .bar{fill:var(--accent)}svg .bar.muted{fill:#b8c0cc}
svg .expected{stroke:var(--leak);stroke-dasharray:5 3}
svg .cursor{stroke:#98a2b3}svg .hover circle{fill:var(--leak)}
svg .readout{fill:#1d2330;font-weight:600}
.legend{font-size:12px;color:var(--muted);margin:2px 0 8px}
.sw{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:3px}
.sw.series{background:var(--accent)}.sw.fit{border-top:2px dashed var(--leak)}
.sw.warm{background:#eef0f3;height:10px}
.site{border:1px solid var(--line);border-left:4px solid var(--leak);border-radius:6px;
padding:10px 14px;margin:10px 0;background:#fff}
.site.merr{border-left-color:var(--error)}
.site figure.chartbox{max-width:520px}
.rank{display:inline-block;min-width:22px;color:var(--muted)}.kind{color:var(--error);
font-weight:700}.reason{color:#5a4500;margin:4px 0}.culpritreason{font-weight:600;margin:4px 0}.history{margin:4px 0}
.source{border:1px solid var(--line);border-radius:4px;margin:8px 0;overflow-x:auto;
background:#fbfbfc}.srcfile{font:12px ui-monospace,monospace;color:var(--muted);
padding:3px 8px;border-bottom:1px solid #eceef2}
.source table{margin:0;width:100%}.source td{padding:0 6px;font:13px/1.5 ui-monospace,
"DejaVu Sans Mono",monospace;white-space:pre}
.source td.ln{color:#98a2b3;text-align:right;width:1%;user-select:none}
.source td.mark{color:var(--leak);width:1%}
.source tr.culprit td{background:#fff3cd}.source tr.culprit td.code{font-weight:700}
details{margin:6px 0}summary{cursor:pointer;font-size:14px}
ul.tree,ul.tree ul{list-style:none;padding-left:16px;margin:2px 0}
ul.tree>li{margin:1px 0}summary.mod{font:13px ui-monospace,monospace;color:#555}
summary.mod.user{color:var(--fg);font-weight:700}
li.frame{padding:1px 4px;border-radius:3px}li.frame.culprit{background:#fff3cd;
font-weight:700}li.inl{color:#555}
.tag{font-size:11px;color:var(--muted);border:1px solid var(--line);border-radius:3px;
padding:0 3px}
ul.pyframes{margin:2px 0;padding-left:22px}
.hbar{display:inline-block;height:10px;background:var(--leak);border-radius:2px;opacity:.75}
td.barcell{width:220px}
code.repr{word-break:break-all}
section.entry{border-top:3px solid var(--line);margin-top:30px}
#rh-errors{background:#fdecea;color:#8a1c1c;padding:8px;white-space:pre-wrap}
button.expand{font-size:12px;float:right}
footer{margin-top:36px;font-size:12px;color:var(--muted)}
@media print{details{display:block}button.expand{display:none}}
"""

ERROR_TRAP = ("window.onerror=function(m,s,l){document.documentElement.setAttribute("
              "'data-rh-error',String(m)+' (line '+l+')');var e=document.getElementById("
              "'rh-errors');if(e){e.hidden=false;e.textContent+='script error: '+m+'\\n';}};")

SCRIPT = r"""
(function(){
function fmt(v,u){var a=Math.abs(v),s=v>0?'+':v<0?'-':'',t=null,
 k=[[1e12,'T'],[1e9,'G'],[1e6,'M'],[1e3,'k']];
 for(var i=0;i<k.length&&t===null;i++)
  if(a>=k[i][0])t=parseFloat((a/k[i][0]).toPrecision(3))+k[i][1];
 if(t===null)t=String(parseFloat(a.toPrecision(3)));
 return s+t+(u?(/\d$/.test(t)?' ':'')+u:'');}
function attach(svg){
 var px=JSON.parse(svg.getAttribute('data-px')),py=JSON.parse(svg.getAttribute('data-py')),
 ii=JSON.parse(svg.getAttribute('data-i')),vv=JSON.parse(svg.getAttribute('data-v')),
 u=svg.getAttribute('data-unit'),g=svg.querySelector('.hover'),
 c=g.querySelector('circle'),ln=g.querySelector('line'),tx=g.querySelector('text');
 if(!px.length)return;
 svg.addEventListener('mousemove',function(ev){
  var m=svg.getScreenCTM();if(!m)return;var p=svg.createSVGPoint();p.x=ev.clientX;p.y=ev.clientY;
  p=p.matrixTransform(m.inverse());var lo=0,hi=px.length-1;
  while(hi-lo>1){var mid=(lo+hi)>>1;if(px[mid]<p.x)lo=mid;else hi=mid;}
  var k=Math.abs(px[lo]-p.x)<=Math.abs(px[hi]-p.x)?lo:hi;
  c.setAttribute('cx',px[k]);c.setAttribute('cy',py[k]);ln.setAttribute('x1',px[k]);
  ln.setAttribute('x2',px[k]);tx.textContent='iteration '+ii[k]+': '+fmt(vv[k],u);
  var w=svg.viewBox.baseVal.width;tx.setAttribute('x',px[k]>w/2?px[k]-6:px[k]+6);
  tx.setAttribute('text-anchor',px[k]>w/2?'end':'start');g.setAttribute('visibility','visible');});
 svg.addEventListener('mouseleave',function(){g.setAttribute('visibility','hidden');});}
var charts=document.querySelectorAll('svg.chart[data-px]');
for(var i=0;i<charts.length;i++)attach(charts[i]);
var b=document.getElementById('expand-all');
if(b){b.hidden=false;b.addEventListener('click',function(){
 var d=document.querySelectorAll('details'),open=b.getAttribute('data-open')!=='1';
 for(var j=0;j<d.length;j++)d[j].open=open;b.setAttribute('data-open',open?'1':'0');
 b.textContent=open?'collapse all':'expand all';});}
document.documentElement.setAttribute('data-rh-ready',String(charts.length));
})();
"""

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
