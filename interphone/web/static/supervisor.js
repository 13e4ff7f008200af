"use strict";
// The supervisor's dashboard (templates/supervisor.html): the live panel.
(function () {
  const refresh = livePanel(document.getElementById("panel"), "/supervisor/panel",
                            "/supervisor/feed");
  setInterval(refresh, 30000);  // times in state keep moving even when nothing happens
})();
