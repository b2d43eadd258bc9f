// The question table of eval_report.html / compare_report.html, inlined into the page by page.py when it
// is written. It reads the page's data (the JSON of the #data element, built by questions.py: questions,
// contexts, breakdown groups, runs, mode) and fills #controls and #table; the tests drive window.jaxqaReport.
(function(){
'use strict';
var D=JSON.parse(document.getElementById('data').textContent);
var Q=D.questions,C=D.contexts,CMP=D.mode==='compare',NR=D.runs.length,G=D.groups,N=Q.length,ROW=28;
var esc=function(s){return String(s).replace(/[&<>"]/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});};
var label=function(q,gi){return G[gi].labels[q.k[gi]];};
function outcome(q){var a=q.r[0].em===1,b=q.r[1].em===1;return a&&b?'both right':(!a&&b?'fixed':(a&&!b?'broken':'both wrong'));}
function ptext(r){return r.p===null||r.p===undefined?'(missing)':(r.p===''?'(no answer)':r.p);}
function conf(r){return r.nb&&r.nb.length?r.nb[0][0]:-1;}
function alt(q,a){return a.length>3?C[q.c].slice(a[2],a[3]):a[2];}
// columns: [label, sort key, cell html, css class]
var cols=[['#','idx',function(q,i){return i+1;},'num mute'],['id','id',function(q){return esc(q.id);},'mute'],
 ['question','q',function(q){return esc(q.q);},''],['type','type',function(q){return esc(label(q,0));},''],
 ['gold','gold',function(q){return esc(q.g.length?q.g[0][0]:'(no answer)');},'']];
if(!CMP){
 cols.push(['prediction','p',function(q){return esc(ptext(q.r[0]));},''],['EM','em',function(q){return q.r[0].em;},'num'],
  ['F1','f1',function(q){return q.r[0].f1.toFixed(2);},'num'],['p','conf',function(q){var c=conf(q.r[0]);return c<0?'':c.toFixed(2);},'num']);
}else{
 cols.push(['prediction A','p',function(q){return esc(ptext(q.r[0]));},''],['prediction B','p2',function(q){return esc(ptext(q.r[1]));},''],
  ['F1 A','f1',function(q){return q.r[0].f1.toFixed(2);},'num'],['F1 B','f1b',function(q){return q.r[1].f1.toFixed(2);},'num'],
  ['Δ F1','d',function(q){var d=q.r[1].f1-q.r[0].f1;return (d>0?'+':'')+d.toFixed(2);},'num'],
  ['outcome','out',function(q){var o=outcome(q);return '<b class="out-'+o.replace(' ','_')+'">'+o+'</b>';},'']);
}
var widths=CMP?'3.2em 6em minmax(10em,3fr) 5.5em minmax(6em,1.4fr) minmax(6em,1.4fr) minmax(6em,1.4fr) 3.4em 3.4em 3.6em 6.5em'
 :'3.6em 7em minmax(12em,3fr) 6em minmax(7em,1.5fr) minmax(7em,1.5fr) 2.4em 3.4em 3em';
var keyf={idx:function(i){return i;},id:function(i){return Q[i].id;},q:function(i){return Q[i].q.toLowerCase();},
 type:function(i){return Q[i].k[0];},gold:function(i){return Q[i].g.length?Q[i].g[0][0].toLowerCase():'';},
 p:function(i){return (Q[i].r[0].p||'').toLowerCase();},p2:function(i){return (Q[i].r[1].p||'').toLowerCase();},
 em:function(i){return Q[i].r[0].em;},f1:function(i){return Q[i].r[0].f1;},f1b:function(i){return Q[i].r[1].f1;},
 d:function(i){return Q[i].r[1].f1-Q[i].r[0].f1;},conf:function(i){return conf(Q[i].r[0]);},out:function(i){return outcome(Q[i]);}};
var filters=CMP?[['all','all questions'],['changed','F1 changed'],['fixed','fixed (A wrong, B right)'],['broken','broken (A right, B wrong)'],
 ['both wrong','both wrong'],['both right','both right']]
 :[['all','all questions'],['wrong','wrong only (EM 0)'],['zero','F1 0'],['partial','partly right (0 < F1 < 1)'],['right','right (EM 1)']];
function passes(q,f){
 if(f==='all')return true;var r=q.r[0];
 if(CMP){if(f==='changed')return q.r[0].f1!==q.r[1].f1;return outcome(q)===f;}
 if(f==='wrong')return r.em===0;if(f==='zero')return r.f1===0;if(f==='partial')return r.f1>0&&r.f1<1;return r.em===1;}
// controls
var ctl=document.getElementById('controls');
var opts=function(list){return list.map(function(o){return '<option value="'+esc(o[0])+'">'+esc(o[1])+'</option>';}).join('');};
var gsel='<option value="">any category</option>'+G.map(function(g,gi){return '<optgroup label="'+esc(g.title)+'">'+
 g.labels.map(function(l,li){return '<option value="'+gi+'|'+li+'">'+esc(l)+'</option>';}).join('')+'</optgroup>';}).join('');
ctl.innerHTML='<input type="search" id="search" placeholder="search question, id, answer, prediction…">'+
 '<select id="filter">'+opts(filters)+'</select><select id="type"><option value="">any type</option>'+
 opts(G[0].labels.map(function(l,li){return [String(li),l];}))+'</select><select id="group">'+gsel+'</select><span id="count"></span>';
// the table: a header and a scroll box that holds only the rows in view (virtualised), between two spacers
var tbl=document.getElementById('table');tbl.style.setProperty('--cols',widths);
tbl.innerHTML='<div id="vp"><div class="qh" id="qh">'+cols.map(function(c){return '<span data-k="'+c[1]+'" class="'+c[3]+'">'+c[0]+'</span>';}).join('')+
 '</div><div id="rows"></div></div>';
var vp=document.getElementById('vp'),rowsEl=document.getElementById('rows');
function cls(q){var r=q.r[NR-1];return r.em===1?'right':(r.f1>0?'part':'wrong');}
var rowHtml=new Array(N);
function row(i){
 if(rowHtml[i]===undefined){var q=Q[i],cells='';
  for(var c=0;c<cols.length;c++){cells+='<span class="'+cols[c][3]+'">'+cols[c][2](q,i)+'</span>';}
  rowHtml[i]='" data-i="'+i+'" data-id="'+esc(q.id)+'" tabindex="0">'+cells+'</div>';}
 return '<div class="qrow '+cls(Q[i])+(open[i]?' open':'')+rowHtml[i];
}
var order=[],view=[],open={},dh={},offs=new Float64Array(1),sortKey='idx',desc=false;
for(var i0=0;i0<N;i0++)order.push(i0);
var hay=null;  // search text per question, built on first search
function haystack(){if(!hay)hay=Q.map(function(q){return (q.id+'\u0001'+q.q+'\u0001'+q.g.map(function(g){return g[0];}).join('\u0001')+'\u0001'+
 q.r.map(function(r){return r.p||'';}).join('\u0001')).toLowerCase();});return hay;}
function layout(){
 offs=new Float64Array(view.length+1);
 for(var k=0;k<view.length;k++){var i=view[k];offs[k+1]=offs[k]+ROW+(open[i]?(dh[i]||320):0);}
 rowsEl.style.height=offs[view.length]+'px';
}
function at(y){var lo=0,hi=view.length;while(lo<hi){var m=(lo+hi)>>1;if(offs[m+1]<=y)lo=m+1;else hi=m;}return lo;}
var shown=[0,-1];
function render(){
 var y=vp.scrollTop-rowsEl.offsetTop,h=vp.clientHeight||600;
 var k0=Math.max(0,at(y-400)),k1=Math.min(view.length-1,at(y+h+400));
 var html='<div class="spacer" style="height:'+offs[k0]+'px"></div>';
 for(var k=k0;k<=k1;k++)html+=row(view[k]);
 rowsEl.innerHTML=html;shown=[k0,k1];
 var changed=false;
 for(var k2=k0;k2<=k1;k2++){var i=view[k2];if(!open[i])continue;
  rowsEl.querySelector('.qrow[data-i="'+i+'"]').after(open[i]);
  var hh=open[i].offsetHeight;if(hh!==dh[i]){dh[i]=hh;changed=true;}}
 if(changed){layout();rowsEl.firstChild.style.height=offs[k0]+'px';}
}
var pending=false;
vp.addEventListener('scroll',function(){if(pending)return;pending=true;requestAnimationFrame(function(){pending=false;render();});});
function apply(){
 var s=document.getElementById('search').value.trim().toLowerCase(),f=document.getElementById('filter').value,
  t=document.getElementById('type').value,gv=document.getElementById('group').value,gi=-1,gl=-1,hs=s?haystack():null;
 if(gv){var cut=gv.indexOf('|');gi=+gv.slice(0,cut);gl=+gv.slice(cut+1);}
 var tt=t===''?-1:+t;
 view=order.filter(function(i){var q=Q[i];return passes(q,f)&&(tt<0||q.k[0]===tt)&&(gi<0||q.k[gi]===gl)&&(!s||hs[i].indexOf(s)>=0);});
 document.getElementById('count').textContent='showing '+view.length+' of '+N+' questions';
 rowsEl.setAttribute('data-shown',view.length);
 layout();vp.scrollTop=0;render();
}
function sortBy(k){
 if(k===sortKey){desc=!desc;}else{sortKey=k;desc=false;}
 var f=keyf[k],vals=Q.map(function(_,i){return f(i);});
 order.sort(function(a,b){var x=vals[a],y=vals[b];var c=x<y?-1:(x>y?1:a-b);return desc&&x!==y?-c:c;});
 Array.prototype.forEach.call(document.querySelectorAll('#qh span'),function(el){
  el.classList.toggle('sorted',el.getAttribute('data-k')===sortKey);el.classList.toggle('desc',el.getAttribute('data-k')===sortKey&&desc);});
 apply();
}
// the context with gold answers and predictions marked, as segments between every span boundary
function marked(q,altSpan){
 var ctx=C[q.c],spans=[];
 q.g.forEach(function(g){if(g.length>2)spans.push([g[1],g[2],'g']);});
 q.r.forEach(function(r,k){if(r.s)spans.push([r.s[0],r.s[1],k?'pb':'pa']);});
 if(altSpan)spans.push([altSpan[0],altSpan[1],'alt']);
 var cuts=[0,ctx.length];spans.forEach(function(s){cuts.push(s[0],s[1]);});
 cuts=cuts.filter(function(v,i,a){return v>=0&&v<=ctx.length&&a.indexOf(v)===i;}).sort(function(a,b){return a-b;});
 var out='';
 for(var i=0;i+1<cuts.length;i++){var a=cuts[i],b=cuts[i+1],cl=[];
  spans.forEach(function(s){if(s[0]<=a&&b<=s[1]&&cl.indexOf(s[2])<0)cl.push(s[2]);});
  var t=esc(ctx.slice(a,b));out+=cl.length?'<span class="'+cl.join(' ')+'">'+t+'</span>':t;}
 return out;
}
function nbestTable(q,k){
 var r=q.r[k];if(!r.nb)return '';
 return '<table class="nbest" data-run="'+k+'"><caption>n-best'+(CMP?' '+'AB'[k]:'')+'</caption><tr><th>#</th><th>text</th><th class="num">prob</th><th class="num">F1</th></tr>'+
  r.nb.map(function(a,j){var t=alt(q,a);return '<tr data-j="'+j+'"><td>'+(j+1)+'</td><td>'+esc(t===''?'(no answer)':t)+'</td><td class="num">'+
  a[0].toFixed(3)+'</td><td class="num">'+a[1].toFixed(2)+'</td></tr>';}).join('')+'</table>';
}
function detail(i){
 var q=Q[i],el=document.createElement('div');el.className='detail';el.setAttribute('data-for',i);
 var gold=q.g.length?q.g.map(function(g){return '<q>'+esc(g[0])+'</q>';}).join(' · '):'(no answer: unanswerable)';
 var preds=q.r.map(function(r,k){return '<div><b>'+(CMP?'prediction '+'AB'[k]:'prediction')+':</b> <q class="ptext">'+esc(ptext(r))+
  '</q> — EM '+r.em+', F1 '+r.f1.toFixed(2)+(r.o!==undefined?', null odds '+r.o:'')+(r.sp?' (best span, not given: <q>'+esc(r.sp)+'</q>)':'')+
  (r.p&&!r.s?' <span class="mute">(not located in the context)</span>':'')+'</div>';}).join('');
 el.innerHTML='<div class="meta"><div><b>'+esc(q.q)+'</b> <span class="mute">'+esc(q.id)+' · '+G.map(function(g,gi){return esc(g.short)+' '+esc(label(q,gi));}).join(' · ')+
  '</span></div><div><b>gold:</b> '+gold+'</div>'+preds+'</div><div class="legend"><i style="background:var(--gold)">gold</i><i style="background:#ffe9cc;box-shadow:inset 0 -3px 0 var(--a)">prediction'+
  (CMP?' A':'')+'</i>'+(CMP?'<i style="box-shadow:inset 0 3px 0 var(--b)">prediction B</i>':'')+'<i style="background:#d9e98a">gold ∩ prediction</i> hover an n-best row to mark it</div>'+
  '<div class="ctx" lang="'+D.lang+'">'+marked(q)+'</div>'+q.r.map(function(_,k){return nbestTable(q,k);}).join('');
 el.addEventListener('mouseover',function(ev){var tr=ev.target.closest('.nbest tr[data-j]');if(!tr)return;
  var a=q.r[+tr.closest('.nbest').getAttribute('data-run')].nb[+tr.getAttribute('data-j')];
  el.querySelector('.ctx').innerHTML=marked(q,a.length>3?[a[2],a[3]]:null);});
 el.addEventListener('mouseleave',function(){el.querySelector('.ctx').innerHTML=marked(q);});
 el.addEventListener('click',function(ev){ev.stopPropagation();});
 return el;
}
function toggle(i){
 if(open[i]){delete open[i];}else{open[i]=detail(i);}
 layout();render();
 var el=open[i];if(!el)return;
 var p=el.querySelector('.ctx .pa, .ctx .g');if(p){var box=el.querySelector('.ctx');box.scrollTop=Math.max(0,p.offsetTop-box.offsetTop-60);}
}
// scroll question i into the box (clearing filters that hide it); returns its row
function reveal(i){
 if(view.indexOf(i)<0){['search','filter','type','group'].forEach(function(id){var e=document.getElementById(id);e.value=id==='filter'?'all':'';});apply();}
 var k=view.indexOf(i);vp.scrollTop=offs[k]+rowsEl.offsetTop-ROW*2;render();
 return rowsEl.querySelector('.qrow[data-i="'+i+'"]');
}
rowsEl.addEventListener('click',function(ev){var r=ev.target.closest('.qrow');if(r)toggle(+r.getAttribute('data-i'));});
rowsEl.addEventListener('keydown',function(ev){var r=ev.target.closest('.qrow');if(r&&ev.key==='Enter')toggle(+r.getAttribute('data-i'));});
document.getElementById('qh').addEventListener('click',function(ev){var s=ev.target.closest('span[data-k]');if(s)sortBy(s.getAttribute('data-k'));});
['search','filter','type','group'].forEach(function(id){document.getElementById(id).addEventListener(id==='search'?'input':'change',apply);});
Array.prototype.forEach.call(document.querySelectorAll('.bd tr[data-g]'),function(tr){tr.addEventListener('click',function(){
 var gi=+tr.getAttribute('data-g');document.getElementById('group').value=gi+'|'+G[gi].labels.indexOf(tr.getAttribute('data-l'));apply();
 document.getElementById('questions').scrollIntoView();});});
document.querySelector('#qh span[data-k="idx"]').classList.add('sorted');
apply();
window.jaxqaReport={rows:N,toggle:toggle,reveal:reveal,sortBy:sortBy,apply:apply,render:render,
 view:function(){return view.slice();},rendered:function(){return shown.slice();}};
requestAnimationFrame(function(){setTimeout(function(){performance.mark('report-ready');window.jaxqaReport.ready=true;},0);});
})();
