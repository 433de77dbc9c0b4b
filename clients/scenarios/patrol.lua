-- patrol.lua: a spacesim-load scenario (spacesim-load -s patrol.lua).
--
-- Every client flies a square patrol around the point where its ship spawned,
-- and fires at the nearest other ship that comes within range. Run it with
-- thousands of clients to load the server with moving, fighting players:
--
--   spacesim-load -c 2000 -d 60 -s patrol.lua --assert 'p99_ms<50,errors==0'
--
-- Hooks (all optional) are global functions; `client.state` is a table of
-- this script's own per client. Requests sent from a hook are timed from the
-- moment the hook was due, as the --mix commands are (open loop).

timer = 0.5          -- seconds between on_timer calls of each client

local SIDE = 200     -- patrol square, world units
local SPEED = 20     -- units per second
local FIRE_RANGE = 150

local corners = { {1, 1}, {-1, 1}, {-1, -1}, {1, -1} }

function setup(client)
  local s = client.state
  s.leg = client.id % 4 + 1   -- spread the clients over the corners
  s.shots = 0
end

local function waypoint(s)
  local c = corners[s.leg]
  return s.home_x + c[1] * SIDE / 2, s.home_y + c[2] * SIDE / 2, s.home_z
end

function on_timer(client)
  local s = client.state
  local x, y, z = client:pos()
  if not x then                  -- own ship not in view yet: wait
    return
  end
  if not s.home_x then
    s.home_x, s.home_y, s.home_z = x, y, z
  end
  local wx, wy, wz = waypoint(s)
  local dx, dy, dz = wx - x, wy - y, wz - z
  local d = math.sqrt(dx * dx + dy * dy + dz * dz)
  if d < SPEED * timer then
    s.leg = s.leg % #corners + 1
    wx, wy, wz = waypoint(s)
    dx, dy, dz = wx - x, wy - y, wz - z
    d = math.sqrt(dx * dx + dy * dy + dz * dz)
  end
  if d > 0 then
    client:move(dx / d * SPEED, dy / d * SPEED, dz / d * SPEED)
  end
  local enemy = client:nearest("ship")
  if enemy then
    local ex, ey, ez = enemy.x - x, enemy.y - y, enemy.z - z
    if ex * ex + ey * ey + ez * ez < FIRE_RANGE * FIRE_RANGE then
      client:fire(enemy.id)
      s.shots = s.shots + 1
    end
  end
end
