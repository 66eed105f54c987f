// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {AggregatorV3Interface} from "../../src/oracle/AggregatorV3Interface.sol";
import {HxPriceAggregator} from "../../src/oracle/HxPriceAggregator.sol";

contract HxPriceAggregatorTest is Test {
    HxPriceAggregator internal feed;
    address internal transmitter = address(0xFEED);

    function setUp() public {
        feed = new HxPriceAggregator(8, "BTC / USD", transmitter);
    }

    function test_readsLikeAChainlinkFeed() public {
        vm.warp(1_700_000_000);
        vm.prank(transmitter);
        feed.submit(64_000e8);
        AggregatorV3Interface reader = AggregatorV3Interface(address(feed));
        (uint80 id, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredIn) =
            reader.latestRoundData();
        assertEq(id, 1);
        assertEq(answer, 64_000e8);
        assertEq(startedAt, 1_700_000_000);
        assertEq(updatedAt, 1_700_000_000);
        assertEq(answeredIn, 1);
        assertEq(reader.decimals(), 8);
        assertEq(reader.description(), "BTC / USD");
        assertEq(reader.version(), 4);
    }

    function test_noDataBeforeTheFirstRoundOrForAnUnknownRound() public {
        vm.expectRevert(bytes("No data present"));
        feed.latestRoundData();
        vm.prank(transmitter);
        feed.submit(1);
        vm.expectRevert(bytes("No data present"));
        feed.getRoundData(2);
        vm.expectRevert(bytes("No data present"));
        feed.getRoundData(0);
    }

    function test_onlyTheTransmitterSubmits() public {
        vm.expectRevert(abi.encodeWithSelector(HxPriceAggregator.NotTransmitter.selector, address(this)));
        feed.submit(1);
    }

    function testFuzz_roundsAreConsecutiveAndNeverChange(int256[8] memory answers, uint32 step) public {
        uint256 t = 1000;
        for (uint256 i = 0; i < answers.length; i++) {
            t += uint256(step) + 1;
            vm.warp(t);
            vm.prank(transmitter);
            if (answers[i] <= 0) {
                vm.expectRevert(
                    abi.encodeWithSelector(HxPriceAggregator.NonPositiveAnswer.selector, answers[i])
                );
                feed.submit(answers[i]);
                continue;
            }
            uint80 id = feed.submit(answers[i]);
            assertEq(id, feed.latestRound());
            (uint80 got, int256 answer,, uint256 updatedAt, uint80 answeredIn) = feed.latestRoundData();
            assertEq(got, id);
            assertEq(answer, answers[i]);
            assertEq(updatedAt, t);
            assertEq(answeredIn, id);
        }
        uint80 n = feed.latestRound();
        uint80 seen;
        for (uint256 i = 0; i < answers.length; i++) {
            if (answers[i] <= 0) continue;
            seen++;
            (, int256 answer,,,) = feed.getRoundData(seen);
            assertEq(answer, answers[i]);
        }
        assertEq(seen, n);
    }
}
