(function(){
  var rows = Array.prototype.slice.call(document.querySelectorAll('#runs tbody tr'));
  var cells = Array.prototype.slice.call(document.querySelectorAll('#grid td[data-run]'));
  var totals = Array.prototype.slice.call(document.querySelectorAll('#totals [data-total]'));
  var q = function(id){ return document.getElementById(id); };
  function apply(){
    var pl = q('f-pipeline').value, st = q('f-status').value, kd = q('f-kind').value;
    var s = q('f-search').value.trim().toLowerCase(), from = q('f-from').value, to = q('f-to').value;
    var shown = {}, count = 0, byStatus = {};
    rows.forEach(function(r){
      var d = r.getAttribute('data-date');
      var ok = (!pl || r.getAttribute('data-pipeline') === pl)
        && (!st || r.getAttribute('data-status') === st) && (!kd || r.getAttribute('data-kind') === kd)
        && (!s || r.getAttribute('data-run').toLowerCase().indexOf(s) >= 0)
        && (!from || d >= from) && (!to || d <= to);
      r.hidden = !ok;
      if (ok) {
        count++; shown[r.getAttribute('data-run')] = true;
        byStatus[r.getAttribute('data-status')] = (byStatus[r.getAttribute('data-status')] || 0) + 1;
      }
    });
    cells.forEach(function(c){ c.hidden = !shown[c.getAttribute('data-run')]; });
    totals.forEach(function(t){ t.querySelector('b').textContent = String(byStatus[t.getAttribute('data-total')] || 0); });
    q('shown').textContent = String(count);
  }
  ['f-pipeline','f-status','f-kind','f-search','f-from','f-to'].forEach(function(id){
    q(id).addEventListener('input', apply); q(id).addEventListener('change', apply);
  });
  apply();
})();
