(function(){
  var rows = Array.prototype.slice.call(document.querySelectorAll('#runs tbody tr'));
  var q = function(id){ return document.getElementById(id); };
  function apply(){
    var st = q('f-status').value, kd = q('f-kind').value, s = q('f-search').value.trim().toLowerCase();
    var from = q('f-from').value, to = q('f-to').value, shown = 0;
    rows.forEach(function(r){
      var d = r.getAttribute('data-date');
      var ok = (!st || r.getAttribute('data-status') === st) && (!kd || r.getAttribute('data-kind') === kd)
        && (!s || r.getAttribute('data-run').toLowerCase().indexOf(s) >= 0)
        && (!from || d >= from) && (!to || d <= to);
      r.hidden = !ok; if (ok) shown++;
    });
    q('shown').textContent = String(shown);
  }
  ['f-status','f-kind','f-search','f-from','f-to'].forEach(function(id){
    q(id).addEventListener('input', apply); q(id).addEventListener('change', apply);
  });
  apply();
})();
